"""Model-wide views over the attached MoE layers: route recording and the load-balancing loss."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from mhmoe.adapters import MOE_LAYERS
from mhmoe.adapters.routing import RouteLog
from mhmoe.errors import ConfigError


def moe_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every MoE adapter layer of the model, by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, MOE_LAYERS)}


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


def balance_loss(model: nn.Module) -> torch.Tensor:
    """The coefficient-weighted load-balancing loss of the last training forward, averaged over MoE layers.

    Zero when no layer has `balance_coef > 0` (or the model was not in training mode).
    """
    losses = [m.balance_coef * m.balance_loss for m in moe_layers(model).values() if m.balance_loss is not None]
    if not losses:
        param = next(model.parameters(), None)
        return torch.zeros((), device=param.device if param is not None else None)
    return torch.stack(losses).mean()
