"""Adapter kinds: a registry from a config's `kind` to its config class and layer builder."""

from __future__ import annotations

from typing import Any

from torch import nn

from mhmoe.adapters.config import AdapterConfig
from mhmoe.adapters.lora import LoRAConfig, LoRALinear
from mhmoe.adapters.moe import HeadedMoELinear, LoRAMoEConfig, MHMoEConfig
from mhmoe.adapters.olora import OLoRAConfig, OLoRALinear
from mhmoe.errors import ConfigError

CONFIGS: dict[str, type[AdapterConfig]] = {c.kind: c for c in (LoRAConfig, LoRAMoEConfig, MHMoEConfig, OLoRAConfig)}
ADAPTER_LAYERS = (LoRALinear, HeadedMoELinear, OLoRALinear)
MOE_LAYERS = (HeadedMoELinear,)


def build_layer(config: AdapterConfig, base_layer: nn.Linear) -> nn.Module:
    """Wrap one frozen linear in the adapter the config describes."""
    shared = {"rank": config.rank, "alpha": config.alpha, "dropout": config.dropout}
    if isinstance(config, LoRAMoEConfig):
        return HeadedMoELinear(
            base_layer,
            **shared,
            experts=config.experts,
            top_k=config.top_k,
            heads=config.router_heads,
            balance_coef=config.balance_coef,
            gate=config.gate,
        )
    if isinstance(config, OLoRAConfig):
        return OLoRALinear(base_layer, **shared, tasks=config.tasks)
    return LoRALinear(base_layer, **shared)


def config_from_dict(data: dict[str, Any], source: str = "adapter config") -> AdapterConfig:
    """Rebuild a config from `to_dict()` output, naming the source on any unknown kind or field."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in CONFIGS:
        raise ConfigError(f"{source}: field 'kind' must be one of {sorted(CONFIGS)}, got {kind!r}")
    cls = CONFIGS[kind]
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {unknown} for kind '{kind}' (known: {sorted(known)})")
    return cls(**data)


__all__ = [
    "ADAPTER_LAYERS",
    "CONFIGS",
    "MOE_LAYERS",
    "AdapterConfig",
    "HeadedMoELinear",
    "LoRAConfig",
    "LoRALinear",
    "LoRAMoEConfig",
    "MHMoEConfig",
    "OLoRAConfig",
    "OLoRALinear",
    "build_layer",
    "config_from_dict",
]
