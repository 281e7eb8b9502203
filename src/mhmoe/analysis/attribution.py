"""Forgetting attribution for every pair of tasks: which training step damaged which task, through which routes.

With L_i(a) the mean loss of task i's analysed tokens under the adapter saved after task a (by default its
answer tokens, so L_i(a) is the loss matrix's L[a][i] on the analysed examples),

    A[j][i] = L_i(j) - L_i(j - 1),        i < j

is the change of task i's loss caused by training task j (positive: forgetting). It splits exactly over the
routes r that task i's tokens took under the adapter before task j (at each analysed module):

    A[j][i] = sum_r (1 / n_i) sum_{t in i, r_t = r} (l_t(j) - l_t(j - 1))

so a route's term is its share of the damage. The column sums over j telescope to the total change of task
i's loss since it was trained. The mean is over tokens; its errors are not estimated here (one adapter
sequence per seed: intervals come from seeds, analysis/across_seeds.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mhmoe.analysis.compositions import row_ids


def route_shares(change: np.ndarray, routes: np.ndarray, top: int) -> list[dict[str, Any]]:
    """The `top` routes with the largest summed change, each with its term (sum over its tokens / all tokens)."""
    rows, route = row_ids(np.sort(routes, axis=-1))
    terms = np.bincount(route, weights=change) / len(change)
    tokens = np.bincount(route)
    order = np.argsort(-terms, kind="stable")[:top]
    return [{"route": rows[r].tolist(), "term": float(terms[r]), "tokens": int(tokens[r])} for r in order]


def attribution(
    losses: list[np.ndarray],
    routes: list[dict[str, np.ndarray]],
    task: np.ndarray,
    names: list[str],
    measured: np.ndarray | None = None,
    *,
    top: int = 3,
) -> dict[str, Any]:
    """A[j][i] (None where i >= j) and, per pair, the routes carrying most of it at each analysed module.

    losses[a]: every token's loss under the adapter after task a; routes[a]: each module's (T, H, k) choices
    under that adapter (for a < n - 1); task: each token's task index; names: a display name per module;
    measured: the tokens whose losses count (the answer tokens, as L), default all.
    """
    measured = np.ones(len(task), dtype=bool) if measured is None else measured
    n = len(losses)
    total: list[list[float | None]] = [[None] * n for _ in range(n)]
    carriers: dict[str, list[dict[str, Any]]] = {}
    for j in range(1, n):
        change = losses[j] - losses[j - 1]
        for i in range(j):
            on = (task == i) & measured
            if not on.any():
                continue
            total[j][i] = float(change[on].mean())
            carriers[f"{j},{i}"] = [
                {"module": name, **share}
                for name, chosen in zip(names, routes[j - 1].values(), strict=True)
                for share in route_shares(change[on], chosen[on], top)
            ]
    return {"A": total, "routes": carriers}
