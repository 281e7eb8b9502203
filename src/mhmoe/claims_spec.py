"""A declared claim about two entries of a run, written down before the seeds are run, e.g.

    claims:
      - {metric: loss_bwt, a: mhmoe-full, b: loramoe-full, direction: lower, primary: true}
      - {metric: op, a: mhmoe-full, b: lora-full, direction: higher, primary: false, margin: 1.0}

A claim is tested on the per-seed differences d_s = value(a) - value(b) (see `mhmoe.metrics.claims`). This
module imports nothing heavy, so the settings layer can validate claims before any model or statistics load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mhmoe.errors import ConfigError

DIRECTIONS = ("lower", "higher")
"""'lower': a's metric is predicted below b's (d < 0); 'higher': above (d > 0)."""


@dataclass(frozen=True)
class Claim:
    """One declared claim: on `metric`, entry `a` is `direction` than entry `b`."""

    metric: str
    """The metric key, as in a run's results (e.g. 'op', 'bwt', 'loss_bwt')."""
    a: str
    """The entry the claim is about (a run row: a method or variant name)."""
    b: str
    """The entry it is compared with, on the same seeds."""
    direction: str
    """'lower' or 'higher': the predicted side of a relative to b."""
    primary: bool = True
    """Primary claims decide when a sequential run stops adding seeds; the others are only reported."""
    margin: float | None = None
    """Equivalence margin d > 0 in the metric's units: if set, |a - b| < d may be concluded ('equivalent within
    ±d'); if None, equivalence is never concluded."""

    def __post_init__(self) -> None:
        for name in ("metric", "a", "b"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"claim: field '{name}' must be a non-empty string, got {value!r}")
        if self.a == self.b:
            raise ConfigError(f"claim: fields 'a' and 'b' must name two different entries, both are {self.a!r}")
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"claim: field 'direction' must be one of {list(DIRECTIONS)}, got {self.direction!r}")
        if not isinstance(self.primary, bool):
            raise ConfigError(f"claim: field 'primary' must be true or false, got {self.primary!r}")
        m = self.margin
        number = isinstance(m, (int, float)) and not isinstance(m, bool)
        if m is not None and not (number and math.isfinite(m) and m > 0):
            raise ConfigError(f"claim: field 'margin' must be a number > 0 or empty, got {m!r}")

    @property
    def sign(self) -> int:
        """The predicted sign of d = a - b: -1 for 'lower', +1 for 'higher'."""
        return -1 if self.direction == "lower" else 1

    def __str__(self) -> str:
        return f"{self.a} vs {self.b}, {self.metric}"
