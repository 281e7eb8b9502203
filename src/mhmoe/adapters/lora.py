"""LoRA (Hu et al., 2021): y = W x + (alpha / r) * B A dropout(x), with B initialised to zero.

Parameter names and initialisation follow PEFT's LoRA, so outputs match it given the same weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from mhmoe.adapters.config import LowRankConfig


@dataclass
class LoRAConfig(LowRankConfig):
    """One low-rank update per adapted linear (the SeqLoRA baseline)."""

    kind: ClassVar[str] = "lora"

    def activated_parameters(self, d_in: int, d_out: int) -> int:
        """A and B: every token goes through the whole update."""
        return self.rank * (d_in + d_out)

    def total_parameters(self, d_in: int, d_out: int) -> int:
        return self.rank * (d_in + d_out)


class LoRALinear(nn.Module):
    """A frozen `base_layer` plus a trainable low-rank update."""

    def __init__(self, base_layer: nn.Linear, *, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.rank, self.scaling = rank, alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        factory = {"device": base_layer.weight.device, "dtype": base_layer.weight.dtype}
        self.adapter_A = nn.Parameter(torch.empty(rank, self.in_features, **factory))
        self.adapter_B = nn.Parameter(torch.zeros(self.out_features, rank, **factory))
        nn.init.kaiming_uniform_(self.adapter_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = self.dropout(x) @ self.adapter_A.t() @ self.adapter_B.t()
        return self.base_layer(x) + update * self.scaling

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scaling={self.scaling:g}"
