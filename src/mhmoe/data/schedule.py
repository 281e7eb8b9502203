"""A boundary-free stream: one sequence of batches whose task mixture shifts gradually along the task order.

In the boundary mode task t occupies the steps [a_t, b_t) of the whole stream, one task after another. Here
each task's examples are spread over the stream's steps by a density: the indicator of [a_t, b_t) smoothed
by a Gaussian of standard deviation `blur * S` steps (S the stream's total steps), reflected at both ends of
the stream. Reflection keeps each task's total (its n_t examples) and keeps the densities summing to one
batch per step, so the two modes train on exactly the same examples. Blur 0 is the boundary mode itself;
from 1 on every batch holds every task in proportion to its size (fully mixed, within 1.5%).

Placement is deterministic: task t's k-th example (in the order the boundary mode would train it) sits at
the (k + 1/2) / n_t quantile of the task's density, all examples are sorted by that time, and consecutive
runs of `per_step` form the steps. So a task keeps its own example order, and blur 0 reproduces the boundary
mode's batches exactly whenever each task fills whole steps.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from mhmoe.errors import ConfigError

FULLY_MIXED = 1.0
"""From this blur on every task's share is its size's share to within 1.5% (2 to 8 equal tasks, measured)."""


def task_densities(sizes: list[int], blur: float, times: np.ndarray) -> np.ndarray:
    """Each task's share of the stream at `times` (in examples from the stream's start), shape (tasks, times).

    Task t's boundary-mode interval is [a_t, b_t) with b_t - a_t = sizes[t]; its density is that interval's
    indicator smoothed by a Gaussian of sd blur * N (N = sum(sizes)) with reflecting ends (the method of
    images), so each row integrates to sizes[t] over [0, N) and the rows sum to 1 at every time.
    """
    if not isinstance(blur, (int, float)) or isinstance(blur, bool) or blur < 0:
        raise ConfigError(f"stream config: field 'blur' must be a number >= 0, got {blur!r}")
    total = float(sum(sizes))
    edges = np.cumsum([0, *sizes]).astype(float)
    if blur == 0:
        return np.stack([(times >= a) & (times < b) for a, b in zip(edges, edges[1:], strict=False)]).astype(float)
    sigma = blur * total
    images = int(np.ceil(4 * blur)) + 1

    def smoothed(a: float, b: float) -> np.ndarray:
        out = np.zeros_like(times, dtype=float)
        for k in range(-images, images + 1):
            shift = 2 * k * total
            for lo, hi in ((a + shift, b + shift), (shift - b, shift - a)):  # the interval and its mirror
                out += ndtr((times - lo) / sigma) - ndtr((times - hi) / sigma)
        return out

    return np.stack([smoothed(a, b) for a, b in zip(edges, edges[1:], strict=False)])


def mixture_schedule(task_orders: list[list[int]], per_step: int, blur: float) -> list[list[tuple[int, int]]]:
    """The stream's steps: each a list of `per_step` (task index, example index) pairs.

    `task_orders[t]` is task t's example indices in the order the boundary mode trains them (epochs and the
    step cap applied), so its length is that task's share of the stream.
    """
    sizes = [len(order) for order in task_orders]
    if not all(sizes):
        raise ConfigError("stream config: every task needs at least one training example in the schedule")
    total = sum(sizes)
    cells = min(16 * total, 400_000)
    times = (np.arange(cells) + 0.5) * total / cells
    density = task_densities(sizes, blur, times)
    placed = []
    for t, order in enumerate(task_orders):
        cumulative = np.cumsum(density[t])
        cumulative /= cumulative[-1]
        # the k-th example at the (k + 1/2)/n quantile: with blur 0, evenly inside [a_t, b_t) and in order
        at = np.interp((np.arange(len(order)) + 0.5) / len(order), cumulative, times)
        placed += [(float(time), t, k, index) for k, (time, index) in enumerate(zip(at, order, strict=True))]
    placed.sort()
    pairs = [(t, index) for _, t, _, index in placed]
    return [pairs[s : s + per_step] for s in range(0, len(pairs), per_step)]
