"""Field checks shared by every settings dataclass: one-line `ConfigError`s naming the section and the field.

A leaf module (it imports only the errors), so run settings, adapter configs and method options can all use it
without importing torch.
"""

from __future__ import annotations

import math
from typing import Any

from mhmoe.errors import ConfigError


def check_positive(kind: str, name: str, value: Any, *, allow_zero: bool = False) -> None:
    """Raise unless `value` is a finite (non-negative if allow_zero, else positive) number: inf passes a bound
    but trains nothing (an eps of inf ran a 'successful' run that learned nothing)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (value >= 0 if allow_zero else value > 0):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{kind} config: field '{name}' must be a finite number {bound}, got {value!r}")


def check_int(kind: str, name: str, value: Any, *, minimum: int = 1) -> None:
    """Raise unless `value` is an integer (not a bool) of at least `minimum`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{kind} config: field '{name}' must be an integer >= {minimum}, got {value!r}")
