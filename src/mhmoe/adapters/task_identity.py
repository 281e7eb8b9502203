"""Which task's prefixes each example uses: the model's per-example task index, and how it is chosen.

Prompt-based methods keep one set of prefixes per task, so a test example needs a task. Training uses the
task being trained. At test time `oracle` gives the true task (task-incremental evaluation) and `infer` the
nearest task prototype: the mean of the frozen model's pooled hidden state (prefixes off; the mean over the
prompt's tokens of the last hidden state) over a task's training prompts, stored when the task ends. Only
prototypes stored so far compete. A forward pre-hook on the model makes the choice once per new sequence
(a forward without a filled KV cache: generation's prefill, or a teacher-forced forward); the decode steps
of generation reuse it. The choice lives on the model (`task_identity.choice`), never in the hook.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mhmoe.errors import MhmoeError

IDENTITY_MODES = ("infer", "oracle")
TASK_IDENTITY = "task_identity"
"""The attribute of the model holding its TaskIdentity (and so the prefix of its prototypes' names)."""


class TaskIdentityError(MhmoeError):
    """A forward whose examples' task cannot be known (no prototype yet, or oracle mode without the true task)."""


@dataclass
class TaskChoice:
    """What every prefix bank of one model reads: the task index of each row of the batch (None: prefixes off)."""

    tasks: torch.Tensor | None = None
    same: int | None = None
    """The one task of every row when that is known without looking (training, oracle): no per-row gather."""

    def set(self, tasks: torch.Tensor | None, same: int | None = None) -> None:
        self.tasks, self.same = tasks, same


@dataclass
class Tally:
    """Task-identification outcomes while one task is scored."""

    correct: int = 0
    total: int = 0

    @property
    def accuracy(self) -> float | None:
        """Percent of identified examples given their true task; None when none was identified."""
        return 100.0 * self.correct / self.total if self.total else None


class TaskIdentity(nn.Module):
    """The task prototypes (buffers adapter_prototypes, adapter_prototype_counts: saved with the adapter, not
    counted as parameters) and the per-example task choice of one model."""

    def __init__(self, hidden: int, tasks: int, mode: str, device: torch.device | None = None) -> None:
        super().__init__()
        self.mode = mode
        self.register_buffer("adapter_prototypes", torch.zeros(tasks, hidden, device=device))
        self.register_buffer("adapter_prototype_counts", torch.zeros(tasks, device=device))
        self.choice = TaskChoice()
        self.training_task: int | None = None
        """Set by the method while a task trains: every example uses that task's prefixes."""
        self.true_task: int | None = None
        """Set while a known task is scored (see `known_task`): oracle mode uses it, infer mode is tallied on it."""
        self.tally: Tally | None = None

    def seen(self) -> int:
        """Tasks with a stored prototype (they are stored in stream order)."""
        return int((self.adapter_prototype_counts > 0).sum())

    def store(self, task: int, states: torch.Tensor) -> None:
        """Task `task`'s prototype: the mean of its examples' pooled states (one row each)."""
        with torch.no_grad():
            self.adapter_prototypes[task] = states.float().mean(dim=0).to(self.adapter_prototypes)
            self.adapter_prototype_counts[task] = len(states)

    def nearest(self, states: torch.Tensor) -> torch.Tensor:
        """Each row's nearest stored prototype (Euclidean distance)."""
        seen = self.seen()
        if seen == 0:
            raise TaskIdentityError("task identity 'infer': no task prototype is stored yet (train a task first)")
        return torch.cdist(states.float(), self.adapter_prototypes[:seen].float()).argmin(dim=1)

    def choose(self, model: nn.Module, input_ids, attention_mask, inputs_embeds=None) -> None:
        """Set `choice.tasks` for a new batch of sequences."""
        rows = (input_ids if input_ids is not None else inputs_embeds).shape[0]
        device = self.adapter_prototypes.device
        if self.training_task is not None:
            self.choice.set(torch.full((rows,), self.training_task, device=device), self.training_task)
            return
        if self.mode == "oracle":
            if self.true_task is None:
                raise TaskIdentityError(
                    "task identity 'oracle' needs the true task: score through evaluate_stream or known_task()"
                )
            self.choice.set(torch.full((rows,), self.true_task, device=device), self.true_task)
            return
        tasks = self.nearest(pooled_states(model, input_ids, attention_mask, inputs_embeds))
        if self.tally is not None and self.true_task is not None and self.true_task < self.seen():
            self.tally.correct += int((tasks == self.true_task).sum())
            self.tally.total += rows
        self.choice.set(tasks)


@contextmanager
def prefixes_off(model: nn.Module) -> Iterator[None]:
    """Run the model as its base model: no prefix columns in any attention layer."""
    identity = getattr(model, TASK_IDENTITY, None)
    saved = (identity.choice.tasks, identity.choice.same) if identity is not None else None
    if identity is not None:
        identity.choice.set(None)
    try:
        yield
    finally:
        if identity is not None:
            identity.choice.set(*saved)


def sequence_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids counted from each row's first real token, so left padding moves nothing."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


@torch.no_grad()
def pooled_states(model: nn.Module, input_ids, attention_mask, inputs_embeds=None) -> torch.Tensor:
    """The frozen model's pooled state of each row: the mean over its unpadded tokens of the last hidden state
    (prefixes off; positions counted from each row's first token, so left padding does not move them)."""
    reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
    if attention_mask is None:
        attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
    with prefixes_off(model):
        hidden = model.base_model(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=sequence_positions(attention_mask),
        ).last_hidden_state
    weights = attention_mask.to(torch.float32).unsqueeze(-1)
    return (hidden.float() * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def choose_tasks(model: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
    """Forward pre-hook: choose the rows' tasks at each new sequence; a decode step keeps the prefill's choice."""
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    if cache is not None and hasattr(cache, "get_seq_length") and cache.get_seq_length() > 0:
        return
    input_ids = kwargs.get("input_ids", args[0] if args else None)
    getattr(model, TASK_IDENTITY).choose(model, input_ids, kwargs.get("attention_mask"), kwargs.get("inputs_embeds"))


@contextmanager
def known_task(model: nn.Module, task: int, *, record: bool = False) -> Iterator[Tally]:
    """While scoring task `task` (0-based in the stream): oracle mode uses it, and with `record` the yielded
    Tally counts how often infer mode identified it. A model without task identity ignores it."""
    tally = Tally()
    identity = getattr(model, TASK_IDENTITY, None)
    if not isinstance(identity, TaskIdentity):
        yield tally
        return
    saved = identity.true_task, identity.tally
    identity.true_task, identity.tally = task, tally if record else None
    try:
        yield tally
    finally:
        identity.true_task, identity.tally = saved
