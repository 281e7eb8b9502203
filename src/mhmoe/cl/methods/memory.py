"""What the rehearsal-style methods keep of earlier tasks: seeded samples of their training examples, per
finished task or, without task boundaries, a reservoir over everything seen.

EWC estimates its Fisher from such a sample; GEM and replay keep one per finished task as an episodic
memory. Samples are a pure function of (seed, purpose, task name), so a rerun keeps the same memory.
"""

from __future__ import annotations

import random

import torch
from torch import nn

from mhmoe.cl.loss import answer_loss
from mhmoe.cl.methods.hooks import HookContext
from mhmoe.data.collate import training_batch
from mhmoe.data.trace import Example, Task


def sample_examples(task: Task, count: int, *, seed: int, purpose: str) -> list[Example]:
    """Up to `count` of the task's training examples, a seeded shuffle's first ones."""
    examples = list(task.split("train"))
    random.Random(f"{seed}:{purpose}:{task.name}").shuffle(examples)
    return examples[:count]


def examples_loss(
    model: nn.Module, context: HookContext, examples: list[Example], reduction: str = "mean"
) -> torch.Tensor:
    """The answer-token loss of a handful of examples, batched as the training loop batches them."""
    batch = training_batch(context.tokenizer, examples, context.max_length)
    device = next(model.parameters()).device
    return answer_loss(model, {k: v.to(device) for k, v in batch.items()}, reduction=reduction)


class EpisodicMemory:
    """A seeded sample of each finished task's training examples, in stream order."""

    def __init__(self, per_task: int, *, seed: int, purpose: str) -> None:
        self.per_task, self.seed, self.purpose = per_task, seed, purpose
        self.tasks: dict[str, list[Example]] = {}

    def store(self, task: Task) -> None:
        self.tasks[task.name] = sample_examples(task, self.per_task, seed=self.seed, purpose=self.purpose)

    def examples(self) -> list[Example]:
        """Every stored example, task after task."""
        return [e for stored in self.tasks.values() for e in stored]

    def state_dict(self) -> dict:
        return {name: [[e.prompt, e.answer, e.features] for e in stored] for name, stored in self.tasks.items()}

    def load_state_dict(self, state: dict) -> None:
        self.tasks = {name: [Example(p, a, dict(f)) for p, a, f in stored] for name, stored in state.items()}

    def __bool__(self) -> bool:
        return bool(self.tasks)


class ReservoirMemory:
    """Reservoir sampling (Vitter's algorithm R) over a stream without task boundaries.

    After n examples have gone by, every one of them is in the memory with probability capacity / n. The
    draw for the n-th example is a function of (seed, n) alone, so a resumed run keeps the same memory.
    """

    def __init__(self, capacity: int, *, seed: int, purpose: str) -> None:
        self.capacity, self.seed, self.purpose = capacity, seed, purpose
        self.slots: list[Example] = []
        self.seen = 0

    def add(self, example: Example) -> None:
        if len(self.slots) < self.capacity:
            self.slots.append(example)
        else:
            slot = random.Random(f"{self.seed}:{self.purpose}:{self.seen}").randrange(self.seen + 1)
            if slot < self.capacity:
                self.slots[slot] = example
        self.seen += 1

    def examples(self) -> list[Example]:
        return list(self.slots)

    def state_dict(self) -> dict:
        return {"seen": self.seen, "slots": [[e.prompt, e.answer, e.features] for e in self.slots]}

    def load_state_dict(self, state: dict) -> None:
        self.seen = state["seen"]
        self.slots = [Example(p, a, dict(f)) for p, a, f in state["slots"]]

    def __bool__(self) -> bool:
        return bool(self.slots)
