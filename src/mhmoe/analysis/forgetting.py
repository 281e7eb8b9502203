"""Route-wise forgetting (research eq. 10-11): does a route that mixes more compositions forget more?

For each route r of the old-task tokens (routes taken before the later task is trained),

    Delta L_old(r) = mean over r's tokens of (loss after the later task - loss before it)

Routes are sorted by N_eff (eq. 9) and cut into bins holding equal old-task token mass (a route is never
split: it goes to the bin its mass midpoint falls in). As in the research, each bin reports the mean and the
standard error of Delta L_old ACROSS its routes (the route is the unit; routes with fewer than `min_tokens`
tokens are too noisy to count and are left out of the mean, never out of the mass). Spearman's rho between
N_eff(r) and Delta L_old(r) over routes with at least `min_tokens` tokens gets its 95% interval from a seeded
bootstrap over examples: examples are resampled with replacement and route sizes, N_eff, Delta L and rho
recomputed, so tokens of one sequence (and one token's copies in several analysed modules) move together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from mhmoe.analysis.compositions import RouteCompositions, effective_compositions, route_n_eff, row_ids


@dataclass(frozen=True)
class Correlation:
    rho: float
    low: float
    high: float
    """The 2.5% and 97.5% percentiles of rho over bootstrap draws of the examples."""
    routes: int
    draws: int


@dataclass(frozen=True)
class RouteForgetting:
    compositions: RouteCompositions
    delta: np.ndarray
    """Delta L_old(r) per route (same order as compositions.routes)."""
    bin_of_route: np.ndarray
    bin_mean: np.ndarray
    """Mean Delta L across the bin's routes with at least `min_tokens` tokens."""
    bin_se: np.ndarray
    """Standard error of that mean: the routes' standard deviation / sqrt(routes)."""
    bin_n_eff: np.ndarray
    """Mean N_eff of the same routes, for the x axis."""
    bin_routes: np.ndarray
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


def _rho(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.spearmanr(x, y).statistic)


def bootstrap_rho(
    route: np.ndarray,
    composition: np.ndarray,
    delta: np.ndarray,
    examples: np.ndarray,
    *,
    min_tokens: int,
    draws: int,
    seed: int,
) -> np.ndarray:
    """Spearman's rho of route N_eff vs route Delta L, once per draw of the examples with replacement."""
    _, owner = np.unique(examples, return_inverse=True)
    owner = owner.reshape(-1)
    rng = np.random.default_rng(seed)
    rhos = []
    for _ in range(draws):
        weights = rng.multinomial(owner.max() + 1, np.full(owner.max() + 1, 1 / (owner.max() + 1)))[owner]
        tokens = np.bincount(route, weights=weights, minlength=route.max() + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_delta = np.bincount(route, weights=weights * delta, minlength=route.max() + 1) / tokens
        enough = tokens >= min_tokens
        rhos.append(_rho(route_n_eff(route, composition, weights)[enough], mean_delta[enough]))
    return np.array(rhos)


def route_forgetting(
    routes: ArrayLike,
    compositions: ArrayLike,
    loss_before: ArrayLike,
    loss_after: ArrayLike,
    examples: ArrayLike,
    *,
    bins: int = 4,
    min_tokens: int = 5,
    draws: int = 200,
    seed: int = 0,
) -> RouteForgetting:
    """Delta L_old per route, binned by mass-quantiles of N_eff, and its rank correlation with N_eff.

    routes and compositions as for `effective_compositions`; loss_before/loss_after: (T,) per-token losses
    of the same old-task tokens before and after training the later task; examples: (T,) each token's
    example id, the unit the bootstrap resamples.
    """
    found = effective_compositions(routes, compositions)
    delta_token = np.asarray(loss_after, dtype=np.float64) - np.asarray(loss_before, dtype=np.float64)
    examples = np.asarray(examples).reshape(-1)
    if delta_token.shape != found.route_of_token.shape or examples.shape != delta_token.shape:
        raise ValueError(
            f"losses have shape {delta_token.shape} and examples {examples.shape}; "
            f"routes cover {found.route_of_token.shape} tokens"
        )
    delta = np.bincount(found.route_of_token, weights=delta_token) / found.tokens
    bin_of_route = mass_quantile_bins(found.n_eff, found.mass, bins)
    enough = found.tokens >= min_tokens
    means, ses, n_effs, counts, masses = [], [], [], [], []
    for b in range(bins):
        counted = (bin_of_route == b) & enough
        values = delta[counted]
        means.append(values.mean() if len(values) else math.nan)
        ses.append(values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else math.nan)
        n_effs.append(found.n_eff[counted].mean() if len(values) else math.nan)
        counts.append(int(counted.sum()))
        masses.append(float(found.mass[bin_of_route == b].sum()))
    rho = _rho(found.n_eff[enough], delta[enough])
    correlation = None
    if not math.isnan(rho):
        _, composition = row_ids(compositions)
        rhos = bootstrap_rho(
            found.route_of_token, composition, delta_token, examples, min_tokens=min_tokens, draws=draws, seed=seed
        )
        rhos = rhos[~np.isnan(rhos)]
        low, high = np.percentile(rhos, [2.5, 97.5]) if len(rhos) else (math.nan, math.nan)
        correlation = Correlation(rho, float(low), float(high), int(enough.sum()), len(rhos))
    return RouteForgetting(
        found,
        delta,
        bin_of_route,
        np.array(means),
        np.array(ses),
        np.array(n_effs),
        np.array(counts),
        np.array(masses),
        correlation,
    )
