"""Metrics of an "anytime" matrix: a boundary-free stream is scored every N steps, not after each task.

A[e][j] is task j's score at evaluation point e (taken at step steps[e]); AL[e][j] is its answer NLL there.

- Anytime average: the area under the curve of the mean score over *every* task of the stream, divided by
  the steps it spans (in score units). Every task counts at every point, so two modes of one stream (with
  and without boundaries) are judged on the same test sets throughout.
- Final OP: the mean of the last row, as for the task matrix R.
- Forgetting from the peak, per task: its best score at any evaluation point minus its last (>= 0); in loss,
  its last NLL minus its lowest (>= 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Matrix = Sequence[Sequence[float]]


def _checked(A: Matrix, steps: Sequence[int] | None = None) -> np.ndarray:
    a = np.asarray(A, dtype=float)
    if a.ndim != 2 or a.size == 0:
        raise ValueError("anytime matrix must be a non-empty list of rows, one score per task")
    if steps is not None:
        if len(steps) != len(a):
            raise ValueError(f"{len(steps)} evaluation steps for {len(a)} rows")
        if any(b <= s for s, b in zip(steps, steps[1:], strict=False)):
            raise ValueError(f"evaluation steps must increase: {list(steps)}")
    return a


def anytime_average(A: Matrix, steps: Sequence[int]) -> float:
    """Trapezoid area under the mean-over-tasks score curve, divided by the span of `steps`."""
    a = _checked(A, steps)
    curve = a.mean(axis=1)
    if len(curve) == 1:
        return float(curve[0])
    x = np.asarray(steps, dtype=float)
    return float(np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def final_op(A: Matrix) -> float:
    """The mean score over every task at the last evaluation point."""
    return float(_checked(A)[-1].mean())


def forgetting_from_peak(A: Matrix) -> list[float]:
    """Per task: its best score at any evaluation point minus its last."""
    a = _checked(A)
    return (a.max(axis=0) - a[-1]).tolist()


def loss_forgetting_from_best(AL: Matrix) -> list[float]:
    """Per task: its last answer NLL minus its lowest at any evaluation point."""
    a = _checked(AL)
    return (a[-1] - a.min(axis=0)).tolist()
