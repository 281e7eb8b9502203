"""The contract between a continual-learning method and the one training loop: its hooks and its registry entry.

A leaf module: the method modules and the registry in `mhmoe.cl.methods` import from here, never the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mhmoe.data.trace import Example, Task


class Hooks:
    """What a method may add to the training loop. Every hook is a no-op here, so a method overrides only the
    ones it needs and the loop calls every hook without asking whether it is there.

    For exact resume, `state_dict` returns everything the hooks have learned (tensors, numbers, strings,
    lists and dicts of them: what `torch.load(weights_only=True)` reads back), and `before_task` must be
    safe to call again on the same task after `load_state_dict`. A forward that `penalty` runs is inside the
    loop's `collect_balance` block, so its load-balancing loss is counted with the batch's own.
    """

    def __init__(self, options: Any = None, context: HookContext | None = None) -> None:
        pass

    def before_task(self, model: nn.Module, task: Task) -> None:
        """With task boundaries: before the task's first step."""

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to every micro-batch's loss; None adds nothing."""
        return None

    def after_backward(self, model: nn.Module) -> None:
        """After each optimizer step's gradients are accumulated, before the step (GEM projects them here)."""

    def after_step(self, model: nn.Module, examples: list[Example]) -> None:
        """Without task boundaries: after every optimizer step, with the step's examples."""

    def after_task(self, model: nn.Module, task: Task) -> None:
        """With task boundaries: after the task's last step."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@dataclass(frozen=True)
class HookContext:
    """What a method may need beyond the model: the tokenizer and the run's training settings."""

    tokenizer: Any
    max_length: int
    seed: int
    batch_size: int = 8
    """Examples per micro-batch, for methods that batch their own examples (GEM's memory, replay)."""
    boundaries: bool = True
    """False on a stream without task boundaries: before_task and after_task are never called, and the loop
    calls `after_step(model, examples)` after every optimizer step instead."""
    consolidate_every: int = 24
    """Without boundaries: steps between a method's own consolidations (online EWC, GEM's pseudo-tasks)."""
    tasks: int = 1
    """Tasks in the stream (a boundary-free memory is sized as the boundary mode's total)."""


class NoHooks(Hooks):
    """Sequential fine-tuning: the adapter alone, nothing added to the loss or the gradients."""


@dataclass(frozen=True)
class Method:
    name: str
    adapter: str
    """The adapter kind it trains (a key of mhmoe.adapters.KINDS)."""
    hooks: Callable[[Any, HookContext], Hooks]
    """Makes the method's fresh state for one run, from its options and the context."""
    summary: str
    options: type | None = None
    """The dataclass of its settings (`method_options.<name>` in a run config), if it has any."""
    needs_tasks: str | None = None
    """Why the method needs to be told which task is current, if it does: it is refused on a stream without
    task boundaries (`stream.boundaries: false`), with this reason."""
