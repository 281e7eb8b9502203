"""How uncertain a number is: standard errors over test examples, intervals over seeds, paired differences.

The independent unit decides the error. An entry of R is a mean over test examples, so its standard error is
over examples: binomial for 0/100 scorers (exact match), a seeded bootstrap of the mean otherwise (ROUGE-L,
edit similarity, SARI). A method's OP or BWT is one number per seed, so its interval is over seeds (Student t),
and two methods run on the same seeds are compared by their per-seed differences (a paired t interval).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from mhmoe.metrics.text import BINARY

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000


def score_error(scorer: str, per_example: Sequence[float], *, seed: int = 0) -> float:
    """Standard error of a task score (0-100) over its test examples; 0 for fewer than two examples.

    0/100 scorers: sqrt(p (1 - p) / n) with p the share scored 100. Others: the standard deviation of the mean
    over `BOOTSTRAP_RESAMPLES` seeded resamples of the examples (scipy's bootstrap).
    """
    scores = np.asarray(per_example, dtype=float)
    n = len(scores)
    if n < 2 or np.all(scores == scores[0]):
        return 0.0
    if scorer in BINARY:
        p = float(np.mean(scores)) / 100.0
        return 100.0 * math.sqrt(p * (1.0 - p) / n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns when the bootstrap distribution is degenerate
        found = stats.bootstrap(
            (scores,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile", random_state=seed
        )
    return float(found.standard_error)


@dataclass(frozen=True)
class Interval:
    """A mean over n independent values and its two-sided Student-t interval (None bounds when n < 2)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    def excludes_zero(self) -> bool:
        return self.low is not None and (self.low > 0 or self.high < 0)

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)

    def __str__(self) -> str:
        if self.low is None:
            return f"{self.mean:.2f}"
        return f"{self.mean:.2f} [{self.low:.2f}, {self.high:.2f}]"


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """mean +- t_{(1+confidence)/2, n-1} * s / sqrt(n), with s the sample standard deviation (ddof 1)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        raise ValueError("t_interval: no values")
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, None, None, n)
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n)


@dataclass(frozen=True)
class PairedDifference:
    """Per-seed differences `value - reference` on the same seeds: their interval and sign agreement."""

    differences: list[float]
    interval: Interval
    agreeing: int
    """Seeds whose difference has the sign of the mean difference (a zero difference never agrees)."""

    def to_dict(self) -> dict:
        return {"differences": self.differences, **self.interval.to_dict(), "agreeing": self.agreeing}


def paired_difference(values: Sequence[float], reference: Sequence[float]) -> PairedDifference:
    """The paired comparison of two methods' per-seed values (same seeds, same order)."""
    if len(values) != len(reference):
        raise ValueError(f"paired_difference: {len(values)} values against {len(reference)} reference values")
    differences = [float(a - b) for a, b in zip(values, reference, strict=True)]
    interval = t_interval(differences)
    sign = np.sign(interval.mean)
    agreeing = int(sum(1 for d in differences if sign != 0 and np.sign(d) == sign))
    return PairedDifference(differences, interval, agreeing)
