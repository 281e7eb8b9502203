"""Gradient episodic memory (Lopez-Paz & Ranzato, 2017) on SeqLoRA's parameters.

After each task a seeded sample of its training examples joins the episodic memory. At every step the
gradient g of the current batch is compared with the gradient g_k of each past task's memory. If any
dot product is negative, g is replaced by the closest vector (in L2) that conflicts with none, found
through GEM's dual quadratic programme over v (one entry per past task, M the rows g_k):

    minimise 1/2 v^T M M^T v + (M g)^T v   subject to v >= margin;   g~ = M^T v + g

The margin ("memory strength") pushes the update beyond merely not increasing the memories' losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import quadprog
import torch
from torch import nn

from mhmoe.adapters.config import check_int, check_positive
from mhmoe.cl.methods.hooks import HookContext, Hooks
from mhmoe.cl.methods.memory import EpisodicMemory, examples_loss
from mhmoe.cl.methods.windows import StepWindows
from mhmoe.data.trace import Example, Task


@dataclass
class GEMOptions:
    memory_per_task: int = 32
    """Training examples kept per finished task. Every step pays one extra forward and backward per past
    task over its memory, so step time grows with the memory and with the stream."""
    margin: float = 0.5
    """GEM's memory strength: the lower bound on the dual variables (0 = the plain projection)."""

    def __post_init__(self) -> None:
        check_int("gem", "memory_per_task", self.memory_per_task)
        check_positive("gem", "margin", self.margin, allow_zero=True)


def project_gradient(gradient: torch.Tensor, memories: torch.Tensor, margin: float, eps: float = 1e-8) -> torch.Tensor:
    """GEM's projection of `gradient` (n,) against the memory gradients (t, n), solved with quadprog.

    Like GEM, a small ridge keeps the programme strictly convex when memory gradients are (nearly)
    linearly dependent. Unlike GEM's fixed 1e-3, it is `eps` times the mean squared memory-gradient norm,
    so it never leaves a visible conflict whatever the gradients' scale.
    """
    rows = memories.detach().double().cpu().numpy()
    g = gradient.detach().double().cpu().numpy()
    gram = rows @ rows.T
    ridge = eps * max(float(np.trace(gram)) / len(rows), np.finfo(np.float64).tiny)
    gram = 0.5 * (gram + gram.T) + ridge * np.eye(len(rows))
    # quadprog minimises 1/2 v^T G v - a^T v subject to C^T v >= b.
    v = quadprog.solve_qp(gram, -(rows @ g), np.eye(len(rows)), np.full(len(rows), margin))[0]
    return torch.from_numpy(rows.T @ v + g).to(gradient)


def _flat_gradient(grads: list[torch.Tensor | None], params: list[nn.Parameter]) -> torch.Tensor:
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params, strict=True)]
    )


class GEM(Hooks):
    """The GEM hooks: store a memory after each task, project conflicting gradients after each backward."""

    def __init__(self, options: GEMOptions, context: HookContext) -> None:
        self.options, self.context = options, context
        self.memory = EpisodicMemory(options.memory_per_task, seed=context.seed, purpose="gem")
        self.projections = 0
        """Steps whose gradient was projected, for the run's log."""
        self.windows = StepWindows(context.consolidate_every)
        """Without task boundaries: every consolidate_every steps' examples become a pseudo-task's memory."""

    def memory_gradient(self, model: nn.Module, params: list[nn.Parameter], examples: list[Example]) -> torch.Tensor:
        """The gradient of the mean answer loss over `examples`, in micro-batches of the run's batch size."""
        size = self.context.batch_size
        total = None
        for start in range(0, len(examples), size):
            chunk = examples[start : start + size]
            loss = examples_loss(model, self.context, chunk) * (len(chunk) / len(examples))
            flat = _flat_gradient(list(torch.autograd.grad(loss, params, allow_unused=True)), params)
            total = flat if total is None else total + flat
        return total

    def after_backward(self, model: nn.Module) -> None:
        if not self.memory:
            return
        params = [p for p in model.parameters() if p.requires_grad]
        current = _flat_gradient([p.grad for p in params], params)
        memories = torch.stack([self.memory_gradient(model, params, stored) for stored in self.memory.tasks.values()])
        if not (memories @ current < 0).any():
            return
        projected = project_gradient(current, memories, self.options.margin)
        self.projections += 1
        offset = 0
        for p in params:
            p.grad = projected[offset : offset + p.numel()].view_as(p).clone()
            offset += p.numel()

    def after_task(self, model: nn.Module, task: Task) -> None:
        self.memory.store(task)

    def after_step(self, model: nn.Module, examples: list[Example]) -> None:
        window = self.windows.add(examples)
        if window is not None:
            self.after_task(model, window)

    def state_dict(self) -> dict:
        return {
            "memory": self.memory.state_dict(),
            "projections": self.projections,
            "windows": self.windows.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.memory.load_state_dict(state["memory"])
        self.projections = state["projections"]
        self.windows.load_state_dict(state["windows"])
