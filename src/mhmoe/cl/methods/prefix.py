"""Prefix tuning and NoRGa as continual-learning methods (adapters/prefix.py holds the attention itself).

Before task t only task t's prefixes (and NoRGa's gates) train, and every training example uses task t's
prefixes; earlier tasks' prefixes stay frozen, later ones untouched. When task t ends, its prototype is
stored: the mean pooled hidden state of the frozen model over a seeded sample of its training prompts, which
`identity: infer` later compares test prompts with (adapters/task_identity.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mhmoe.adapters.config import check_int
from mhmoe.adapters.prefix import task_identity, train_only_task
from mhmoe.adapters.task_identity import pooled_states
from mhmoe.cl.methods.hooks import HookContext
from mhmoe.data.collate import prompt_batch
from mhmoe.data.trace import Task


@dataclass
class PrefixOptions:
    prototype_examples: int = 256
    """Training prompts per task averaged into its prototype (a seeded sample; the whole split if smaller)."""

    def __post_init__(self) -> None:
        check_int("prefix", "prototype_examples", self.prototype_examples)


@torch.no_grad()
def task_prototype_states(model: nn.Module, task: Task, context: HookContext, examples: int) -> torch.Tensor:
    """The frozen model's pooled state of each sampled training prompt of `task`, one row each."""
    train = task.split("train")
    generator = torch.Generator().manual_seed(context.seed)
    chosen = torch.randperm(len(train), generator=generator)[:examples].tolist()
    prompts = [train[i].prompt for i in chosen]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rows = []
    for start in range(0, len(prompts), context.batch_size):
        batch = prompt_batch(context.tokenizer, prompts[start : start + context.batch_size], context.max_length)
        rows.append(pooled_states(model, batch["input_ids"].to(device), batch["attention_mask"].to(device)))
    model.train(was_training)
    return torch.cat(rows)


class PrefixTuning:
    """The hooks of `prefix` and `norga`: train the next task's prefixes; store its prototype when it ends."""

    def __init__(self, options: PrefixOptions, context: HookContext) -> None:
        self.options, self.context = options, context
        self.current = 0
        """Index of the task being trained: the tasks finished so far."""

    def before_task(self, model: nn.Module, task: Task) -> None:
        train_only_task(model, self.current)

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        return None

    def after_backward(self, model: nn.Module) -> None:
        pass

    def after_task(self, model: nn.Module, task: Task) -> None:
        identity = task_identity(model)
        identity.training_task = None
        states = task_prototype_states(model, task, self.context, self.options.prototype_examples)
        identity.store(self.current, states)
        self.current += 1

    def state_dict(self) -> dict:
        return {"current": self.current}

    def load_state_dict(self, state: dict) -> None:
        self.current = state["current"]
