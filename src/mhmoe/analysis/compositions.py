"""How many feature compositions share each route: the effective composition number (research eq. 8-9).

For a route r (the expert choice of a token at one layer; for MH-MoE the tuple over heads) and the
compositions c of the old-task tokens routed through it,

    N_eff(r) = 1 / sum_c p(c | r)^2,         mean N_eff = sum_r m(r) N_eff(r)

with m(r) the route's share of the tokens. N_eff = 1 means a route serves one composition; a route that
mixes many compositions evenly has N_eff near their count, and is where later tasks overwrite earlier ones.
N_eff(r) can never exceed the number of tokens on r, so compare methods on equal token counts and note
that a router with more distinct routes (path-wise MH-MoE) sees fewer tokens per route.
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
    """N_eff(r) per route."""
    mass: np.ndarray
    """m(r): each route's share of the tokens."""
    mean: float
    """sum_r m(r) N_eff(r), the mass-weighted mean."""


def _as_rows(values: ArrayLike) -> np.ndarray:
    values = np.asarray(values)
    return values.reshape(len(values), -1)


def effective_compositions(routes: ArrayLike, compositions: ArrayLike) -> RouteCompositions:
    """N_eff of every route and their mass-weighted mean.

    routes: (T,) route ids or (T, ...) per-token route tuples (e.g. the (H, k) choices of MH-MoE's heads,
    compared whole, so the route is path-wise); compositions: (T,) composition ids or (T, F) feature tuples.
    """
    route_rows, route_of_token = np.unique(_as_rows(routes), axis=0, return_inverse=True)
    _, composition_of_token = np.unique(_as_rows(compositions), axis=0, return_inverse=True)
    route_of_token, composition_of_token = route_of_token.reshape(-1), composition_of_token.reshape(-1)
    if len(route_of_token) != len(composition_of_token):
        raise ValueError(f"routes has {len(route_of_token)} tokens but compositions has {len(composition_of_token)}")
    if len(route_of_token) == 0:
        raise ValueError("effective_compositions: no tokens")
    joint = np.zeros((len(route_rows), composition_of_token.max() + 1))
    np.add.at(joint, (route_of_token, composition_of_token), 1.0)
    tokens = joint.sum(axis=1)
    p = joint / tokens[:, None]
    n_eff = 1.0 / (p**2).sum(axis=1)
    mass = tokens / tokens.sum()
    return RouteCompositions(route_rows, route_of_token, tokens, n_eff, mass, float((mass * n_eff).sum()))


def per_head_compositions(chosen: ArrayLike, compositions: ArrayLike) -> list[RouteCompositions]:
    """N_eff with each head's own choice as the route: chosen is (T, H, k); one result per head."""
    chosen = np.asarray(chosen)
    return [effective_compositions(np.sort(chosen[:, h], axis=-1), compositions) for h in range(chosen.shape[1])]
