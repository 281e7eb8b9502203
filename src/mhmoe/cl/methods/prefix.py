"""Prefix tuning and NoRGa as continual-learning methods (adapters/prefix.py holds the attention itself).

Before task t only task t's prefixes (and NoRGa's gates) train, and every training example uses task t's
prefixes; earlier tasks' prefixes stay frozen, later ones untouched. With `init: tokens` (the default), task t's
prefixes start as the frozen model's keys and values of real tokens from a seeded sample of its training prompts,
so training starts near the base model; `init: uniform` keeps the public code's draw. When task t ends, its
prototype is stored: the mean pooled hidden state of the frozen model over a seeded sample of its training
prompts, which `identity: infer` later compares test prompts with (adapters/task_identity.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mhmoe.adapters.config import check_int
from mhmoe.adapters.prefix import initialise_from_tokens, task_identity, train_only_task
from mhmoe.adapters.task_identity import pooled_states
from mhmoe.cl.eval_mode import evaluating
from mhmoe.cl.methods.hooks import HookContext, Hooks
from mhmoe.data.collate import prompt_batch
from mhmoe.data.trace import Task
from mhmoe.errors import ConfigError

PREFIX_INITS = ("tokens", "uniform")


@dataclass
class PrefixOptions:
    prototype_examples: int = 256
    """Training prompts per task averaged into its prototype (a seeded sample; the whole split if smaller)."""
    init: str = "tokens"
    """A task's prefixes before it trains: 'tokens' (the frozen model's keys and values of real tokens of its
    training prompts) or 'uniform' (uniform in [-1, 1], the public ViT code's; far from the base model when long)."""
    init_examples: int = 32
    """Training prompts whose tokens the 'tokens' initialisation draws from (a seeded sample)."""

    def __post_init__(self) -> None:
        check_int("prefix", "prototype_examples", self.prototype_examples)
        check_int("prefix", "init_examples", self.init_examples)
        if self.init not in PREFIX_INITS:
            raise ConfigError(f"prefix options: field 'init' must be one of {list(PREFIX_INITS)}, got {self.init!r}")


def sampled_prompts(task: Task, seed: int, examples: int) -> list[str]:
    """A seeded sample of `examples` training prompts of `task` (the whole split if smaller)."""
    train = task.split("train")
    generator = torch.Generator().manual_seed(seed)
    return [train[i].prompt for i in torch.randperm(len(train), generator=generator)[:examples].tolist()]


@torch.no_grad()
def task_prototype_states(model: nn.Module, task: Task, context: HookContext, examples: int) -> torch.Tensor:
    """The frozen model's pooled state of each sampled training prompt of `task`, one row each."""
    prompts = sampled_prompts(task, context.seed, examples)
    device = next(model.parameters()).device
    rows = []
    with evaluating(model):
        for start in range(0, len(prompts), context.batch_size):
            batch = prompt_batch(context.tokenizer, prompts[start : start + context.batch_size], context.max_length)
            rows.append(pooled_states(model, batch["input_ids"].to(device), batch["attention_mask"].to(device)))
    return torch.cat(rows)


def initialise_task_prefixes(model: nn.Module, index: int, task: Task, context: HookContext, examples: int) -> None:
    """Task `index`'s prefixes from the frozen model's keys and values of tokens of sampled training prompts."""
    prompts = sampled_prompts(task, context.seed + index, examples)
    batch = prompt_batch(context.tokenizer, prompts, context.max_length)
    device = next(model.parameters()).device
    with evaluating(model):
        initialise_from_tokens(
            model, index, batch["input_ids"].to(device), batch["attention_mask"].to(device), seed=context.seed + index
        )


class PrefixTuning(Hooks):
    """The hooks of `prefix` and `norga`: train the next task's prefixes; store its prototype when it ends."""

    def __init__(self, options: PrefixOptions, context: HookContext) -> None:
        self.options, self.context = options, context
        self.current = 0
        """Index of the task being trained: the tasks finished so far."""
        self.initialised = 0
        """Tasks whose prefixes have been initialised: a resumed task keeps its trained prefixes."""

    def before_task(self, model: nn.Module, task: Task) -> None:
        train_only_task(model, self.current)
        if self.options.init == "tokens" and self.initialised <= self.current:
            initialise_task_prefixes(model, self.current, task, self.context, self.options.init_examples)
        self.initialised = self.current + 1

    def after_task(self, model: nn.Module, task: Task) -> None:
        identity = task_identity(model)
        identity.training_task = None
        states = task_prototype_states(model, task, self.context, self.options.prototype_examples)
        identity.store(self.current, states)
        self.current += 1

    def state_dict(self) -> dict:
        return {"current": self.current, "initialised": self.initialised}

    def load_state_dict(self, state: dict) -> None:
        self.current = state["current"]
        self.initialised = state.get("initialised", self.current)
