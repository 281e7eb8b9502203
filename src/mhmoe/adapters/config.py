"""Fields every adapter kind shares (and those of the low-rank kinds), and their validation.

Each kind's config is a dataclass that adds its own fields; `__post_init__` raises a one-line
`ConfigError` naming the field, so a bad setting fails before any model is touched.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import regex

from mhmoe.checks import check_int, check_positive  # the kinds and methods import them from here too
from mhmoe.errors import ConfigError

# The research adapts the MLP projections of every decoder layer (Llama/Qwen/Gemma/Mistral names).
DEFAULT_TARGET_MODULES = ("gate_proj", "up_proj", "down_proj")


REGEX_SECONDS = 2.0
"""How long matching a target regex against all of a model's module names may take: a pattern that backtracks
catastrophically (one from a hostile adapter_config.json) is refused rather than left to hang the machine."""


def matching_names(names: Iterable[str], patterns: list[str] | str) -> list[str]:
    """The module names that are targets: each ends in one of the suffixes, or fully matches the regex (all the
    names together within REGEX_SECONDS)."""
    if not isinstance(patterns, str):
        return [n for n in names if any(n == p or n.endswith("." + p) for p in patterns)]
    deadline, found = time.monotonic() + REGEX_SECONDS, []
    try:
        compiled = regex.compile(patterns)
        for name in names:
            if compiled.fullmatch(name, timeout=max(deadline - time.monotonic(), 1e-3)) is not None:
                found.append(name)
    except TimeoutError:
        raise ConfigError(
            f"field 'target_modules': the regex {patterns[:60]!r} took over {REGEX_SECONDS:g} s to match this "
            "model's module names; use a list of module-name suffixes or a simpler pattern"
        ) from None
    except regex.error as err:
        raise ConfigError(f"field 'target_modules': {patterns[:60]!r} is not a valid regex ({err})") from None
    return found


@dataclass
class AdapterConfig:
    """Fields shared by all adapter kinds: where the adapter attaches, and which field sets its size."""

    kind: ClassVar[str] = "adapter"
    size_field: ClassVar[str] = "rank"
    """The field a parameter budget is matched through (rank for the low-rank kinds, prefix_length for prefixes)."""
    per_task: ClassVar[bool] = False
    """Whether the kind trains a different part of itself on each task; such a kind has a `tasks` field, one part
    per task, which `for_stream` sets."""

    target_modules: list[str] | str = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))
    """PEFT-style: a list of module-name suffixes, or one regular expression matched against the full name."""

    def __post_init__(self) -> None:
        targets = self.target_modules
        if isinstance(targets, tuple):
            self.target_modules = targets = list(targets)
        if not targets or not (isinstance(targets, str) or all(isinstance(t, str) and t for t in targets)):
            raise ConfigError(
                f"{self.kind} config: field 'target_modules' must be a non-empty list of names or a regex string, "
                f"got {targets!r}"
            )

    @property
    def size(self) -> int:
        return getattr(self, self.size_field)

    @property
    def router_heads(self) -> int:
        """Routers per adapted module, each reading one slice of the input (1 for a kind that does not route)."""
        return 1

    @property
    def routers_fixed(self) -> bool:
        """Whether the configuration gives its routers no gradient at all (never, for a kind without routers)."""
        return False

    def for_stream(self, tasks: int) -> AdapterConfig:
        """This config sized to a stream of `tasks` tasks: one part per task for a per-task kind, else unchanged."""
        return replace(self, tasks=tasks) if self.per_task else self

    def check_shape(self, name: str, d_in: int, d_out: int) -> None:
        """Raise unless the kind can adapt module `name` of this shape; every shape is fine unless a kind says."""

    def activated_parameters(self, d_in: int, d_out: int) -> int:
        """Adapter parameters one token touches in one adapted module of shape [d_in, d_out]; each kind counts."""
        raise NotImplementedError(f"adapter kind '{self.kind}' does not count its activated parameters")

    def total_parameters(self, d_in: int, d_out: int) -> int:
        """All adapter parameters of one adapted module of shape [d_in, d_out]; each kind counts."""
        raise NotImplementedError(f"adapter kind '{self.kind}' does not count its total parameters")

    def resized(self, size: int) -> AdapterConfig:
        """This config with `size` in its size field (what budget matching changes)."""
        return replace(self, **{self.size_field: size})

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass
class LowRankConfig(AdapterConfig):
    """Fields of the kinds that add low-rank updates to linears (LoRA, its MoE forms, O-LoRA)."""

    rank: int = 8
    """Rank r of each low-rank update (per expert for the MoE kinds)."""
    alpha: float = 16.0
    """The update is scaled by alpha / rank, as in LoRA."""
    dropout: float = 0.0
    """Dropout on the adapter's input (never on the router's)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.kind, "rank", self.rank)
        check_positive(self.kind, "alpha", self.alpha)
        check_positive(self.kind, "dropout", self.dropout, allow_zero=True)
        if self.dropout >= 1:
            raise ConfigError(f"{self.kind} config: field 'dropout' must be < 1, got {self.dropout!r}")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def resized(self, size: int) -> LowRankConfig:
        """At rank `size`, keeping alpha / rank: at a fixed alpha a larger rank would learn more slowly."""
        return replace(self, rank=size, alpha=self.scaling * size)
