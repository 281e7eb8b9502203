"""Route-wise forgetting (research eq. 10-11): does a route that mixes more compositions forget more?

For each route r of the old-task tokens (routes taken before the later task is trained),

    Delta L_old(r) = mean over r's tokens of (loss after the later task - loss before it)

Routes are sorted by N_eff and cut into bins holding equal old-task token mass (a route is never split:
it goes to the bin its mass midpoint falls in); each bin reports its token-weighted mean Delta L and the
standard error over its tokens. The rank correlation between N_eff(r) and Delta L_old(r) over routes with
enough tokens is reported with a 95% interval (Fisher z with the Fieller-Hartley-Pearson variance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from mhmoe.analysis.compositions import RouteCompositions, effective_compositions


@dataclass(frozen=True)
class Correlation:
    rho: float
    low: float
    high: float
    routes: int


@dataclass(frozen=True)
class RouteForgetting:
    compositions: RouteCompositions
    delta: np.ndarray
    """Delta L_old(r) per route (same order as compositions.routes)."""
    bin_of_route: np.ndarray
    bin_mean: np.ndarray
    """Token-weighted mean Delta L per N_eff bin."""
    bin_se: np.ndarray
    bin_n_eff: np.ndarray
    """Token-weighted mean N_eff per bin, for the x axis."""
    bin_mass: np.ndarray
    correlation: Correlation | None
    """Spearman's rho of N_eff vs Delta L over routes with at least `min_tokens` tokens (None if < 4)."""


def mass_quantile_bins(n_eff: np.ndarray, mass: np.ndarray, bins: int) -> np.ndarray:
    """The bin (0..bins-1) of each route: sorted by N_eff, equal mass per bin, by each route's mass midpoint."""
    order = np.argsort(n_eff, kind="stable")
    share = mass[order] / mass.sum()
    midpoint = np.cumsum(share) - share / 2
    result = np.empty(len(n_eff), dtype=np.int64)
    result[order] = np.minimum((midpoint * bins).astype(np.int64), bins - 1)
    return result


def spearman_interval(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> Correlation | None:
    """Spearman's rho with a Fisher-z interval, variance 1.06 / (n - 3) (Fieller, Hartley & Pearson, 1957)."""
    n = len(x)
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    rho = float(stats.spearmanr(x, y).statistic)
    z, half = (
        math.atanh(max(min(rho, 0.999999), -0.999999)),
        stats.norm.ppf(0.5 + level / 2) * math.sqrt(1.06 / (n - 3)),
    )
    return Correlation(rho, math.tanh(z - half), math.tanh(z + half), n)


def route_forgetting(
    routes: ArrayLike,
    compositions: ArrayLike,
    loss_before: ArrayLike,
    loss_after: ArrayLike,
    *,
    bins: int = 4,
    min_tokens: int = 5,
) -> RouteForgetting:
    """Delta L_old per route, binned by mass-quantiles of N_eff, and its correlation with N_eff.

    routes and compositions as for `effective_compositions`; loss_before/loss_after: (T,) per-token losses
    of the same old-task tokens before and after training the later task.
    """
    found = effective_compositions(routes, compositions)
    delta_token = np.asarray(loss_after, dtype=np.float64) - np.asarray(loss_before, dtype=np.float64)
    if delta_token.shape != found.route_of_token.shape:
        raise ValueError(f"losses have shape {delta_token.shape}, routes cover {found.route_of_token.shape} tokens")
    delta = np.bincount(found.route_of_token, weights=delta_token) / found.tokens
    bin_of_route = mass_quantile_bins(found.n_eff, found.mass, bins)
    bin_of_token = bin_of_route[found.route_of_token]
    means, ses, n_effs, masses = [], [], [], []
    for b in range(bins):
        in_bin = bin_of_token == b
        values = delta_token[in_bin]
        means.append(values.mean() if len(values) else math.nan)
        ses.append(values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else math.nan)
        n_effs.append(found.n_eff[found.route_of_token[in_bin]].mean() if len(values) else math.nan)
        masses.append(in_bin.mean())
    enough = found.tokens >= min_tokens
    return RouteForgetting(
        found,
        delta,
        bin_of_route,
        np.array(means),
        np.array(ses),
        np.array(n_effs),
        np.array(masses),
        spearman_interval(found.n_eff[enough], delta[enough]),
    )
