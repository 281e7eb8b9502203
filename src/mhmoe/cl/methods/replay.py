"""Experience replay: every step also trains on a few stored examples of the finished tasks.

After each task a seeded sample of its training examples joins the memory (without task boundaries, every
example seen passes through a reservoir of the same total size instead). Each micro-batch of B current
examples then draws n = max(1, round(fraction * B)) stored examples (seeded, uniform with replacement) and
adds their mean answer loss weighted by n / B. Weighting each example equally, that is the loss of one
batch of B + n examples of which n are replayed, times (B + n) / B.

With a routed (MoE) adapter the replayed forward's load-balancing loss counts as well: the loop collects
the balance loss of every forward of a micro-batch, and averages the current batch's and the replayed one's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mhmoe.adapters.config import check_int
from mhmoe.cl.methods.hooks import HookContext, Hooks
from mhmoe.cl.methods.memory import EpisodicMemory, ReservoirMemory, examples_loss
from mhmoe.data.trace import Example, Task
from mhmoe.errors import ConfigError


@dataclass
class ReplayOptions:
    fraction: float = 0.25
    """Replayed examples per current example in each micro-batch (0 < fraction <= 1): the knob that matters."""
    memory_per_task: int = 64
    """Training examples kept per finished task."""

    def __post_init__(self) -> None:
        check_int("replay", "memory_per_task", self.memory_per_task)
        ok = isinstance(self.fraction, (int, float)) and not isinstance(self.fraction, bool)
        if not ok or not 0 < self.fraction <= 1:
            raise ConfigError(f"replay config: field 'fraction' must be in (0, 1], got {self.fraction!r}")


class Replay(Hooks):
    """The replay hooks: store a memory after each task, add a replayed loss to every later micro-batch."""

    def __init__(self, options: ReplayOptions, context: HookContext) -> None:
        self.options, self.context = options, context
        if context.boundaries:
            self.memory = EpisodicMemory(options.memory_per_task, seed=context.seed, purpose="replay")
        else:  # no task ends to store at: a reservoir over everything seen, the boundary mode's total size
            self.memory = ReservoirMemory(options.memory_per_task * context.tasks, seed=context.seed, purpose="replay")
        self.draws = 0
        """Micro-batches replayed so far; with the seed it fixes the next draw."""

    @property
    def per_batch(self) -> int:
        return max(1, round(self.options.fraction * self.context.batch_size))

    def draw(self) -> list[Example]:
        """The next micro-batch's replayed examples: uniform over the memory, a function of (seed, draws)."""
        stored = self.memory.examples()
        generator = torch.Generator().manual_seed(self.context.seed * 1_000_003 + self.draws)
        self.draws += 1
        return [stored[i] for i in torch.randint(len(stored), (self.per_batch,), generator=generator).tolist()]

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        if not self.memory:
            return None
        return examples_loss(model, self.context, self.draw()) * (self.per_batch / self.context.batch_size)

    def after_task(self, model: nn.Module, task: Task) -> None:
        self.memory.store(task)

    def after_step(self, model: nn.Module, examples: list[Example]) -> None:
        for example in examples:
            self.memory.add(example)

    def state_dict(self) -> dict:
        return {"memory": self.memory.state_dict(), "draws": self.draws}

    def load_state_dict(self, state: dict) -> None:
        self.memory.load_state_dict(state["memory"])
        self.draws = state["draws"]
