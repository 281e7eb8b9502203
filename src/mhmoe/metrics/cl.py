"""Pure functions over the score matrix R (0-based): R[i][j] is the score on task j after training
through task i, for a stream of n tasks (an n x n matrix).

OP  = mean of the last row (overall performance after the whole stream).
BWT = mean over i < n-1 of (R[n-1][i] - R[i][i]); negative means forgetting, as in the research's tables.
FWT = mean over i >= 1 of (R[i-1][i] - base[i]): what earlier tasks did for a task before it was trained.

The same shapes over the loss matrix L (L[i][j]: task j's mean answer-token NLL after training through task i):
loss-BWT = mean over i < n-1 of (L[n-1][i] - L[i][i]), the mean rise of each earlier task's loss by the end of
the stream. Its sign is the opposite of BWT's: positive means forgetting.
"""

from __future__ import annotations

from collections.abc import Sequence

Matrix = Sequence[Sequence[float]]


def _square(R: Matrix) -> int:
    n = len(R)
    if n == 0:
        raise ValueError("matrix is empty")
    for i, row in enumerate(R):
        if len(row) != n:
            raise ValueError(f"matrix must be square: row {i} has {len(row)} entries, expected {n}")
    return n


def op(R: Matrix) -> float:
    """Overall performance: the mean score over all tasks after training on the last."""
    n = _square(R)
    return sum(R[n - 1]) / n


def bwt(R: Matrix) -> float:
    """Backward transfer: how much training later tasks changed earlier ones (0 for a single task).

    BWT = 1/(n-1) * sum over i < n of (R[n][i] - R[i][i]), TRACE's and GEM's form (1-based): negative means
    forgetting, and positive transfer is kept, not clipped to 0 as some codebases do. The research's tables
    use this sign, but its eq. 21 as printed is 1/n * sum over i <= n of (R[i][i] - R[n][i]), the opposite
    sign and (n-1)/n times the size (`bwt_eq21`); compare published figures with care.
    """
    n = _square(R)
    if n == 1:
        return 0.0
    return sum(R[n - 1][i] - R[i][i] for i in range(n - 1)) / (n - 1)


def bwt_eq21(R: Matrix) -> float:
    """The research's eq. 21 exactly as printed: the mean drop over all n tasks, = -(n-1)/n * bwt(R)."""
    n = _square(R)
    return sum(R[i][i] - R[n - 1][i] for i in range(n)) / n


def fwt(R: Matrix, base: Sequence[float]) -> float:
    """Forward transfer against `base[j]`, the score of the untrained model on task j (0 for a single task)."""
    n = _square(R)
    if len(base) != n:
        raise ValueError(f"base scores have {len(base)} entries, expected {n} (one per task)")
    if n == 1:
        return 0.0
    return sum(R[i - 1][i] - base[i] for i in range(1, n)) / (n - 1)


def loss_bwt(L: Matrix) -> float:
    """Mean increase of each earlier task's answer NLL from just after it was learned to the end (0 for one task)."""
    n = _square(L)
    if n == 1:
        return 0.0
    return sum(L[n - 1][i] - L[i][i] for i in range(n - 1)) / (n - 1)


def final_old_loss(L: Matrix) -> float:
    """Mean answer NLL of the earlier tasks at the end of the stream, (1/(n-1)) sum_{i<n-1} L[n-1][i]: where
    loss-BWT ends, without the starting point it subtracts (so a method that fit a task less is not credited
    for having less to lose). 0 for one task."""
    n = _square(L)
    if n == 1:
        return 0.0
    return sum(L[n - 1][i] for i in range(n - 1)) / (n - 1)


def forgetting_curves(L: Matrix) -> list[list[float]]:
    """Per task j, its loss from just after it was learned to the end of the stream: [L[j][j], ..., L[n-1][j]]."""
    n = _square(L)
    return [[L[i][j] for i in range(j, n)] for j in range(n)]
