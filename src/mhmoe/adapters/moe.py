"""Mixture-of-LoRA-experts layers: LoRAMoE (one router over the whole input) and MH-MoE (one per head).

MH-MoE splits the router input x into H contiguous slices x_1..x_H. Head m has its own router
Linear(d_in/H -> K) and a private bank of K rank-r experts E^(m)_j: R^{d_in/H} -> R^{d_out}; it picks
its top-k experts S_m and the head outputs are summed onto the frozen base layer:

    y = W x + (alpha / r) * sum_m sum_{j in S_m} a_{m,j} B^(m)_j A^(m)_j x_m

LoRAMoE is the same layer with H = 1. The computation is dense-masked and head-batched: one batched
matmul runs every head's router, one runs every expert's A, the gates zero the unchosen experts, and
one matmul runs all B's. Unchosen experts therefore get exactly zero gradient, and a few large
operations beat a sparse dispatch on CPUs and at small batches (see benchmarks/adapter_layer.py).
The line-by-line form of the research's Algorithm 1, one token and head at a time, is
`mhmoe.adapters.reference.reference_forward`; the tests check this layer against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from mhmoe.adapters.config import LowRankConfig, check_int, check_positive
from mhmoe.adapters.routing import GATE_MODES, RouteLog, balance_loss, route
from mhmoe.errors import ConfigError


@dataclass
class LoRAMoEConfig(LowRankConfig):
    """K LoRA experts behind one router that reads the whole input."""

    kind: ClassVar[str] = "loramoe"

    experts: int = 4
    """K, the number of experts in each bank."""
    top_k: int = 1
    """Experts chosen per token (per head for MH-MoE)."""
    balance_coef: float = 0.0
    """Weight of the Switch-style load-balancing loss (0 turns it off)."""
    gate: str = "selected"
    """'selected': softmax over the chosen experts' logits; 'full': the full softmax's probabilities."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.kind, "experts", self.experts)
        check_int(self.kind, "top_k", self.top_k)
        if self.top_k > self.experts:
            raise ConfigError(f"{self.kind} config: field 'top_k'={self.top_k} exceeds 'experts'={self.experts}")
        check_positive(self.kind, "balance_coef", self.balance_coef, allow_zero=True)
        if self.gate not in GATE_MODES:
            raise ConfigError(f"{self.kind} config: field 'gate' must be one of {GATE_MODES}, got {self.gate!r}")

    @property
    def router_heads(self) -> int:
        return 1

    @property
    def routers_fixed(self) -> bool:
        """True for top-1 routing, gate 'selected' and no balance loss: the chosen expert's weight is always 1, so
        the task loss gives the routers exactly zero gradient and nothing else trains them."""
        return self.top_k == 1 and self.gate == "selected" and not self.balance_coef

    def check_shape(self, name: str, d_in: int, d_out: int) -> None:
        """The heads split the input into equal slices."""
        if d_in % self.router_heads:
            raise ConfigError(
                f"{self.kind} config: field 'heads'={self.router_heads} does not divide in_features={d_in} "
                f"of module '{name}'"
            )

    def activated_parameters(self, d_in: int, d_out: int) -> int:
        """Every head reads its router and runs k experts, each mapping a d_in/H slice to all of d_out: a top-1
        head-wise update is a rank-H*r update per token."""
        heads = self.router_heads
        return d_in * self.experts + heads * self.top_k * self.rank * (d_in // heads + d_out)

    def total_parameters(self, d_in: int, d_out: int) -> int:
        # routers H * (d_in/H) * K, experts' A H * (d_in/H) * K * r, experts' B H * K * r * d_out
        return d_in * self.experts + self.experts * self.rank * (d_in + self.router_heads * d_out)


@dataclass
class MHMoEConfig(LoRAMoEConfig):
    """H head-aligned slices of the input, each with its own router and private bank of K experts."""

    kind: ClassVar[str] = "mhmoe"

    heads: int = 8
    """H; must divide the input width of every adapted module."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.kind, "heads", self.heads)

    @property
    def router_heads(self) -> int:
        return self.heads


class HeadedMoELinear(nn.Module):
    """A frozen `base_layer` plus H heads, each routing its input slice to top-k of K LoRA experts."""

    def __init__(
        self,
        base_layer: nn.Linear,
        *,
        rank: int,
        alpha: float,
        dropout: float,
        experts: int,
        top_k: int,
        heads: int,
        balance_coef: float = 0.0,
        gate: str = "selected",
    ) -> None:
        super().__init__()
        d_in, d_out = base_layer.in_features, base_layer.out_features
        if d_in % heads:
            raise ConfigError(f"field 'heads'={heads} does not divide in_features={d_in}")
        self.base_layer = base_layer
        self.in_features, self.out_features = d_in, d_out
        self.rank, self.scaling = rank, alpha / rank
        self.experts, self.top_k, self.heads, self.head_dim = experts, top_k, heads, d_in // heads
        self.balance_coef, self.gate = balance_coef, gate
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        factory = {"device": base_layer.weight.device, "dtype": base_layer.weight.dtype}
        bound = 1 / math.sqrt(self.head_dim)  # nn.Linear's and PEFT's LoRA-A init for fan-in d_in/H
        self.adapter_router = nn.Parameter(
            torch.empty(heads, self.head_dim, experts, **factory).uniform_(-bound, bound)
        )
        self.adapter_A = nn.Parameter(
            torch.empty(heads, self.head_dim, experts, rank, **factory).uniform_(-bound, bound)
        )
        self.adapter_B = nn.Parameter(torch.zeros(heads, experts, rank, d_out, **factory))
        self.balance_log: list[torch.Tensor] | None = None  # set only inside mhmoe.collect_balance
        self.route_log: RouteLog | None = None  # set only inside mhmoe.record_routes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_shape = x.shape[:-1]
        h, d_h, k_experts, r = self.heads, self.head_dim, self.experts, self.rank
        slices = x.reshape(-1, h, d_h).transpose(0, 1)  # (H, N, d_h), a view
        expert_in, logits = self._expert_inputs_and_logits(slices)
        gates, chosen, probs = route(logits, self.top_k, self.gate)
        # The scaling rides on the (H, N, K) gates rather than on the (N, d_out) output: one pass fewer.
        weights = (gates * self.scaling).to(expert_in.dtype).unsqueeze(-1)
        hidden = (expert_in.view(h, -1, k_experts, r) * weights).transpose(0, 1).reshape(-1, h * k_experts * r)
        # hidden is (N, H*K*r), zero off the chosen experts; one matmul runs every B, accumulated onto the base.
        base_out = self.base_layer(x).reshape(-1, self.out_features)
        out = torch.addmm(base_out, hidden, self.adapter_B.view(h * k_experts * r, self.out_features))

        if self.balance_log is not None and self.training and self.balance_coef > 0:
            self.balance_log.append(self.balance_coef * balance_loss(probs, chosen))
        if self.route_log is not None:
            self.route_log.add(chosen, probs, batch_shape)
        return out.view(*batch_shape, self.out_features)

    def _expert_inputs_and_logits(self, slices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every expert's A x_m (H, N, K*r) and every router's logits (H, N, K).

        Without active dropout both come from one batched matmul (the router's columns appended to A's),
        which halves the passes over the strided input slices; dropout must not reach the router, so then
        they are two.
        """
        experts_a = self.adapter_A.view(self.heads, self.head_dim, self.experts * self.rank)
        if isinstance(self.dropout, nn.Identity) or not self.training:
            fused = torch.bmm(slices, torch.cat([experts_a, self.adapter_router], dim=-1))
            return fused.split([self.experts * self.rank, self.experts], dim=-1)
        return torch.bmm(self.dropout(slices), experts_a), torch.bmm(slices, self.adapter_router)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, experts={self.experts}, top_k={self.top_k}, rank={self.rank}, gate={self.gate}"
