"""How many feature compositions share each route: the effective composition number (research eq. 8-9),
and what chance alone gives.

For a route r (the expert choice of a token at one layer; for MH-MoE the tuple over heads) and the
compositions c of the old-task tokens routed through it, eq. 9 is the plug-in inverse Simpson index

    N_eff(r) = 1 / sum_c p(c | r)^2,         plug-in mean = sum_r m(r) N_eff(r)

with m(r) the route's share of the tokens. N_eff = 1 means a route serves one composition. The plug-in
N_eff(r) can never exceed the n_r tokens on r (a route holding one token has N_eff 1 whatever the
compositions), so a router with many routes (path-wise MH-MoE: 4^8 of them) scores low by construction:
with uniformly random routing of 5,000 tokens over 96 compositions it is about 90 for 4 routes and about
1.07 for 4^8 routes. Two corrections, both reported beside the plug-in value:

- **Unbiased (pair) form.** n_rc(n_rc - 1) / (n_r(n_r - 1)) is an unbiased estimate of sum_c p(c|r)^2 on one
  route, but on a route without a repeated composition its inverse is infinite, so the routes are pooled
  by their pairs: N_pair = sum_r n_r(n_r - 1) / sum_r sum_c n_rc(n_rc - 1), the inverse of the chance that two
  distinct tokens sharing a route share a composition. This departs from eq. 9 (a pair-weighted pooled
  index, not the mass-weighted mean of per-route indices) and is not capped by the tokens per route.
- **Permutation null.** The compositions are shuffled across the tokens, route sizes kept, and both forms
  recomputed, `draws` times with a seeded generator. The excess = observed - null mean, with the null's
  standard deviation as its spread. Under the null, N_pair is (in expectation of its inverse) the global
  unbiased index 1 / (sum_c n_c(n_c - 1) / (n(n - 1))).

The sign of the excess: a router whose routes follow the compositions puts repeated compositions together,
so N_eff falls BELOW the null (negative excess: fewer compositions per route than chance). Forcing two
compositions onto one route that separated routing kept apart moves the excess up. A positive excess needs
routes more mixed than random draws from the global mix: the mixture of the routes' composition
distributions is the global one, and by convexity sum_c p(c)^2 <= sum_r m(r) sum_c p(c|r)^2, so in the
population no routing can beat the null; only a finite-sample anti-clustering (a router that deals each
composition's tokens out over the routes) lands above it. Compare methods by the excess, not by N_eff.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class RouteCompositions:
    routes: np.ndarray
    """The distinct routes, one row each (a route id, or the tuple of per-head choices)."""
    route_of_token: np.ndarray
    """For each token, the row of `routes` it took."""
    tokens: np.ndarray
    """Tokens per route."""
    n_eff: np.ndarray
    """N_eff(r) per route (eq. 9, plug-in)."""
    mass: np.ndarray
    """m(r): each route's share of the tokens."""
    mean: float
    """sum_r m(r) N_eff(r), the mass-weighted plug-in mean."""


def _as_rows(values: ArrayLike) -> np.ndarray:
    values = np.asarray(values)
    return values.reshape(len(values), -1)


def row_ids(values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of `values` and each token's row index."""
    rows, inverse = np.unique(_as_rows(values), axis=0, return_inverse=True)
    return rows, inverse.reshape(-1)


def _cells(route: np.ndarray, composition: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Per route, sum_c n_rc^2 (token weights count as multiplicities)."""
    width = int(composition.max()) + 1
    keys, inverse = np.unique(route * width + composition, return_inverse=True)
    counts = np.bincount(inverse.reshape(-1), weights=weights)
    return np.bincount(keys // width, weights=counts**2, minlength=int(route.max()) + 1)


def route_n_eff(route: np.ndarray, composition: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Eq. 9 per route id from integer ids; token weights (e.g. bootstrap multiplicities) count as copies."""
    tokens = np.bincount(route, weights=weights, minlength=int(route.max()) + 1).astype(np.float64)
    squares = _cells(route, composition, weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tokens**2 / squares  # NaN for a route that a bootstrap draw left empty


def plug_in_and_pair(route: np.ndarray, composition: np.ndarray) -> tuple[float, float]:
    """(mass-weighted plug-in N_eff, pooled pair N_eff) from integer route and composition ids."""
    tokens = np.bincount(route).astype(np.float64)
    squares = _cells(route, composition)
    used = tokens > 0
    plug_in = float((tokens[used] ** 3 / squares[used]).sum() / tokens.sum())  # sum_r m(r) n_r^2 / sum_c n_rc^2
    pairs, same = (tokens * (tokens - 1)).sum(), (squares - tokens).sum()  # sum n_rc(n_rc-1) = sum n_rc^2 - n_r
    if pairs == 0:
        return plug_in, float("nan")  # no route holds two tokens: no pair to compare
    return plug_in, float("inf") if same == 0 else float(pairs / same)


def effective_compositions(routes: ArrayLike, compositions: ArrayLike) -> RouteCompositions:
    """N_eff of every route and their mass-weighted mean (eq. 9, plug-in).

    routes: (T,) route ids or (T, ...) per-token route tuples (e.g. the (H, k) choices of MH-MoE's heads,
    compared whole, so the route is path-wise); compositions: (T,) composition ids or (T, F) feature tuples.
    """
    route_rows, route_of_token = row_ids(routes)
    _, composition_of_token = row_ids(compositions)
    if len(route_of_token) != len(composition_of_token):
        raise ValueError(f"routes has {len(route_of_token)} tokens but compositions has {len(composition_of_token)}")
    if len(route_of_token) == 0:
        raise ValueError("effective_compositions: no tokens")
    tokens = np.bincount(route_of_token).astype(np.float64)
    n_eff = tokens**2 / _cells(route_of_token, composition_of_token)
    mass = tokens / tokens.sum()
    return RouteCompositions(route_rows, route_of_token, tokens, n_eff, mass, float((mass * n_eff).sum()))


def per_head_compositions(chosen: ArrayLike, compositions: ArrayLike) -> list[RouteCompositions]:
    """N_eff with each head's own choice as the route: chosen is (T, H, k); one result per head."""
    chosen = np.asarray(chosen)
    return [effective_compositions(np.sort(chosen[:, h], axis=-1), compositions) for h in range(chosen.shape[1])]


@dataclass(frozen=True)
class NullComparison:
    """Observed N_eff in both forms against the permutation null's draws (one value per draw)."""

    plug_in: float
    pair: float
    plug_in_null: np.ndarray
    pair_null: np.ndarray

    def summary(self) -> dict[str, dict[str, float | None]]:
        """Per form: observed, null mean, null sd and excess = observed - null mean (None where undefined).

        The pair form's null is averaged on its natural scale, the collision chance D = 1 / N_pair (a draw
        without a repeated composition has D = 0 and N_pair infinite): null mean 1 / mean(D), spread by the
        delta method sd(D) / mean(D)^2.
        """
        plug_in = self.plug_in_null
        collision = 1.0 / self.pair_null
        mean_d = float(collision.mean()) if len(collision) else float("nan")
        forms = {
            "plug_in": (self.plug_in, plug_in.mean(), plug_in.std(ddof=1)),
            "pair": (self.pair, 1.0 / mean_d, collision.std(ddof=1) / mean_d**2),
        }
        out = {}
        for form, (observed, mean, sd) in forms.items():
            if len(plug_in) < 2 or not np.isfinite(mean):
                mean, sd = float("nan"), float("nan")
            out[form] = {
                "observed": _finite(observed),
                "null_mean": _finite(mean),
                "null_sd": _finite(sd),
                "excess": _finite(observed - mean),
            }
        return out


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def against_null(routes: ArrayLike, compositions: ArrayLike, *, draws: int = 20, seed: int = 0) -> NullComparison:
    """Plug-in and pair N_eff of `routes`, and both under `draws` seeded shuffles of the compositions.

    A shuffle permutes the compositions over the tokens, so every route keeps its size; the same seed gives
    the same permutations for any routing of the same tokens (so heads can be averaged draw by draw).
    """
    _, route = row_ids(routes)
    _, composition = row_ids(compositions)
    if len(route) != len(composition):
        raise ValueError(f"routes has {len(route)} tokens but compositions has {len(composition)}")
    rng = np.random.default_rng(seed)
    null = np.array([plug_in_and_pair(route, rng.permutation(composition)) for _ in range(draws)]).reshape(-1, 2)
    return NullComparison(*plug_in_and_pair(route, composition), null[:, 0], null[:, 1])


def mean_comparison(found: list[NullComparison]) -> NullComparison:
    """The average of several comparisons over the same tokens and draws (e.g. over heads), draw by draw."""
    return NullComparison(
        float(np.mean([f.plug_in for f in found])),
        float(np.mean([f.pair for f in found])),
        np.mean([f.plug_in_null for f in found], axis=0),
        np.mean([f.pair_null for f in found], axis=0),
    )
