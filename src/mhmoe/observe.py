"""Model-wide views over the attached MoE layers: route recording and load-balancing loss collection.

Both work the same way: inside a `with` block every MoE layer appends to a log; outside it they hold none.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from mhmoe.adapters import routed_layers
from mhmoe.adapters.routing import RouteLog
from mhmoe.errors import ConfigError


def moe_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every MoE adapter layer of the model, by module name."""
    layers = routed_layers()
    return {name: m for name, m in model.named_modules() if isinstance(m, layers)}


@contextmanager
def record_routes(model: nn.Module, *, probs: bool = True) -> Iterator[dict[str, RouteLog]]:
    """Record, for every MoE layer, the chosen expert(s) per token and head and the router probabilities.

    Yields {module name: RouteLog}; each forward call inside the block appends to it. Outside the block
    the layers hold no log, so recording costs nothing when it is not used. `probs=False` keeps only the
    chosen experts (a long recording's memory is then 2 bytes per token, head and choice).
    """
    layers = moe_layers(model)
    if not layers:
        raise ConfigError("record_routes: the model has no MoE adapter layers (attach a loramoe or mhmoe config)")
    logs = {}
    for name, layer in layers.items():
        layer.route_log = logs[name] = RouteLog(layer.heads, layer.experts, layer.top_k, keep_probs=probs)
    try:
        yield logs
    finally:
        for layer in layers.values():
            layer.route_log = None


@dataclass
class BalanceLosses:
    """The load-balancing losses collected in one `collect_balance` block: one per MoE layer and forward."""

    losses: list[torch.Tensor] = field(default_factory=list)
    """Each already weighted by its layer's `balance_coef`, in the order the forwards ran."""
    device: torch.device | None = None

    def loss(self) -> torch.Tensor:
        """Their mean over every (layer, forward) pair; zero when nothing was collected."""
        if not self.losses:
            return torch.zeros((), device=self.device)
        return torch.stack(self.losses).mean()


@contextmanager
def collect_balance(model: nn.Module) -> Iterator[BalanceLosses]:
    """Collect the Switch load-balancing loss of every training forward inside the block.

    Each MoE layer with `balance_coef > 0` adds `balance_coef * loss` (per head for MH-MoE) for every forward
    in training mode; `.loss()` averages them. Outside the block the layers keep nothing, so no loss of an
    earlier forward can be read by mistake. A model without MoE layers collects nothing (the loss is zero).
    """
    param = next(model.parameters(), None)
    collected = BalanceLosses(device=param.device if param is not None else None)
    layers = moe_layers(model).values()
    for layer in layers:
        layer.balance_log = collected.losses
    try:
        yield collected
    finally:
        for layer in layers:
            layer.balance_log = None
