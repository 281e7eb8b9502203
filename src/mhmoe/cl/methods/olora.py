"""O-LoRA (Wang et al., 2023): a fresh LoRA per task, learned orthogonal to the earlier tasks' LoRAs.

The adapter (adapters/olora.py) keeps every task's LoRA in the forward pass; before task t only its pair
is left trainable. The loss adds

    lambda1 * sum over layers, s < t of sum |A_s A_t^T|  +  lambda2 * sum ||P|| over task t's A and B

(entry-wise absolute values; ||.|| the Frobenius norm of each tensor, as O-LoRA's code sums them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mhmoe.adapters.config import check_positive
from mhmoe.adapters.olora import task_layers, train_only_task
from mhmoe.cl.methods.hooks import HookContext, Hooks
from mhmoe.data.trace import Task


@dataclass
class OLoRAOptions:
    lambda1: float = 0.5
    """Weight of the orthogonality loss between the new task's A and every earlier task's A."""
    lambda2: float = 0.0
    """Weight of the L2 norm of the new task's LoRA parameters."""

    def __post_init__(self) -> None:
        check_positive("olora", "lambda1", self.lambda1, allow_zero=True)
        check_positive("olora", "lambda2", self.lambda2, allow_zero=True)


def olora_penalty(model: nn.Module, current: int, lambda1: float, lambda2: float) -> torch.Tensor:
    """O-LoRA's added loss for training task `current` (0-based) of the stack."""
    layers = task_layers(model)
    orthogonal = sum(layer.orthogonality(current) for layer in layers)
    norms = sum(torch.linalg.norm(p) for layer in layers for p in layer.lora(current))
    return lambda1 * orthogonal + lambda2 * norms


class OLoRA(Hooks):
    """The O-LoRA hooks: switch to the next task's LoRA before each task; add the penalty on every step."""

    def __init__(self, options: OLoRAOptions, context: HookContext) -> None:
        self.options = options
        self.current = 0
        """Index of the task being trained (its LoRA is the trainable one): the tasks finished so far."""

    def before_task(self, model: nn.Module, task: Task) -> None:
        train_only_task(model, self.current)

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        if self.current == 0 and self.options.lambda2 == 0:
            return None
        return olora_penalty(model, self.current, self.options.lambda1, self.options.lambda2)

    def after_task(self, model: nn.Module, task: Task) -> None:
        self.current += 1

    def state_dict(self) -> dict:
        return {"current": self.current}

    def load_state_dict(self, state: dict) -> None:
        self.current = state["current"]
