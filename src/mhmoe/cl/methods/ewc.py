"""Elastic weight consolidation (Kirkpatrick et al., 2017) on SeqLoRA's parameters.

After each task, the diagonal of the empirical Fisher is estimated from a sample of its training examples:
the mean squared gradient of each example's answer log-likelihood (summed over its answer tokens). The
Fishers of all tasks so far are summed (or, online, decayed and summed), and later tasks pay

    lambda / 2 * sum_i F_i (theta_i - theta*_i)^2

with theta* the adapter after the previous task. The Fisher is taken from the log-likelihood alone, never
from the penalty: it measures what the data pins down, not what EWC already protects. Without task
boundaries the same consolidation runs every `consolidate_every` steps on that window's examples (online EWC
when `decay` is set; summed otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from mhmoe.adapters.config import check_int, check_positive
from mhmoe.cl.eval_mode import evaluating
from mhmoe.cl.methods.hooks import HookContext, Hooks
from mhmoe.cl.methods.memory import examples_loss, sample_examples
from mhmoe.cl.methods.windows import StepWindows
from mhmoe.data.trace import Example, Task
from mhmoe.errors import ConfigError
from mhmoe.inject import adapter_parameters


@dataclass
class EWCOptions:
    lam: float = 1000.0
    """lambda, the penalty's weight: the knob that matters (too small forgets, too large cannot learn)."""
    fisher_examples: int = 64
    """Training examples per task used to estimate its Fisher (a seeded sample)."""
    decay: float | None = None
    """Empty: sum the tasks' Fishers. A number in (0, 1]: online EWC, F = decay * F + F_new."""

    def __post_init__(self) -> None:
        check_positive("ewc", "lam", self.lam, allow_zero=True)
        check_int("ewc", "fisher_examples", self.fisher_examples)
        if self.decay is not None and not 0 < self.decay <= 1:
            raise ConfigError(f"ewc config: field 'decay' must be in (0, 1] or empty, got {self.decay!r}")


def diagonal_fisher(
    params: dict[str, nn.Parameter], example_losses: Iterable[Callable[[], torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """Mean over examples of the squared gradient of each example's negative log-likelihood."""
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    count = 0
    for loss in example_losses:
        grads = torch.autograd.grad(loss(), list(params.values()), allow_unused=True)
        for name, grad in zip(params, grads, strict=True):
            if grad is not None:
                fisher[name] += grad.detach() ** 2
        count += 1
    return {name: f / max(count, 1) for name, f in fisher.items()}


class EWC(Hooks):
    """The EWC hooks: a Fisher after each task, the quadratic penalty on every later step."""

    def __init__(self, options: EWCOptions, context: HookContext) -> None:
        self.options, self.context = options, context
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self.windows = StepWindows(context.consolidate_every)
        """Without task boundaries: a Fisher every consolidate_every steps, on that window's examples."""

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        if not self.fisher:
            return None
        params = adapter_parameters(model)
        total = sum((self.fisher[n] * (p - self.anchor[n]) ** 2).sum() for n, p in params.items())
        return self.options.lam / 2 * total

    def after_step(self, model: nn.Module, examples: list[Example]) -> None:
        window = self.windows.add(examples)
        if window is not None:
            self.after_task(model, window)

    def state_dict(self) -> dict:
        return {"fisher": self.fisher, "anchor": self.anchor, "windows": self.windows.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.fisher, self.anchor = dict(state["fisher"]), dict(state["anchor"])
        self.windows.load_state_dict(state["windows"])

    def after_task(self, model: nn.Module, task: Task) -> None:
        examples = sample_examples(task, self.options.fisher_examples, seed=self.context.seed, purpose="ewc")
        params = adapter_parameters(model)
        with evaluating(model):  # no dropout in the estimate
            new = diagonal_fisher(
                params,
                (lambda e=e: examples_loss(model, self.context, [e], reduction="sum") for e in examples),
            )
        decay = 1.0 if self.options.decay is None else self.options.decay
        self.fisher = {n: decay * self.fisher[n] + f if self.fisher else f for n, f in new.items()}
        self.anchor = {n: p.detach().clone() for n, p in params.items()}
