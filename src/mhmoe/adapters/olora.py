"""O-LoRA's adapter (Wang et al., 2023): one LoRA per task of the stream, all of them in the forward pass.

    y = W x + (alpha / r) * sum_t B_t A_t dropout(x)

Only the current task's pair trains; earlier pairs are frozen, later pairs still have B_t = 0 and so add
nothing. Every pair is allocated at attach time, so the saved adapter always holds the whole stack and
the computation never depends on which task is current (a saved adapter re-scores exactly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from mhmoe.adapters.config import LowRankConfig, check_int
from mhmoe.errors import ConfigError


@dataclass
class OLoRAConfig(LowRankConfig):
    """A stack of per-task LoRAs (the O-LoRA baseline); `rank` is each task's rank."""

    kind: ClassVar[str] = "olora"
    per_task: ClassVar[bool] = True

    tasks: int = 1
    """LoRAs in the stack, one per task of the stream (a run sets it to the stream's length)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.kind, "tasks", self.tasks)

    def activated_parameters(self, d_in: int, d_out: int) -> int:
        return self.tasks * self.rank * (d_in + d_out)  # every task's LoRA stays in the forward

    def total_parameters(self, d_in: int, d_out: int) -> int:
        return self.tasks * self.rank * (d_in + d_out)


class OLoRALinear(nn.Module):
    """A frozen `base_layer` plus one low-rank update per task, parameters adapter_A_<t> / adapter_B_<t>."""

    def __init__(self, base_layer: nn.Linear, *, rank: int, alpha: float, dropout: float, tasks: int) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.rank, self.scaling, self.tasks = rank, alpha / rank, tasks
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        factory = {"device": base_layer.weight.device, "dtype": base_layer.weight.dtype}
        for t in range(tasks):
            a = nn.Parameter(torch.empty(rank, self.in_features, **factory), requires_grad=t == 0)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            self.register_parameter(f"adapter_A_{t}", a)
            self.register_parameter(
                f"adapter_B_{t}", nn.Parameter(torch.zeros(self.out_features, rank, **factory), requires_grad=t == 0)
            )

    def lora(self, t: int) -> tuple[nn.Parameter, nn.Parameter]:
        return getattr(self, f"adapter_A_{t}"), getattr(self, f"adapter_B_{t}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pairs = [self.lora(t) for t in range(self.tasks)]
        a = torch.cat([a for a, _ in pairs])  # (tasks * r, d_in): one matmul for the whole stack
        b = torch.cat([b for _, b in pairs], dim=1)
        return self.base_layer(x) + (self.dropout(x) @ a.t() @ b.t()) * self.scaling

    def orthogonality(self, current: int) -> torch.Tensor:
        """sum_{t < current} sum |A_t A_current^T|: O-LoRA's overlap of the new subspace with the old ones."""
        a_new = self.lora(current)[0]
        zero = a_new.new_zeros(())
        return sum((torch.abs(self.lora(t)[0] @ a_new.t()).sum() for t in range(current)), zero)

    def extra_repr(self) -> str:
        return f"rank={self.rank} per task, tasks={self.tasks}, scaling={self.scaling:g}"


def task_layers(model: nn.Module) -> list[OLoRALinear]:
    return [m for m in model.modules() if isinstance(m, OLoRALinear)]


def train_only_task(model: nn.Module, current: int) -> None:
    """Make task `current`'s LoRAs the only trainable parameters of every O-LoRA layer."""
    layers = task_layers(model)
    if not layers:
        raise ConfigError("model carries no O-LoRA adapter (kind 'olora')")
    if not 0 <= current < layers[0].tasks:
        raise ConfigError(f"olora: task {current + 1} is beyond the adapter's {layers[0].tasks} task LoRAs")
    for layer in layers:
        for t in range(layer.tasks):
            for param in layer.lora(t):
                param.requires_grad_(t == current)
