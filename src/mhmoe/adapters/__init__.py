"""Adapter kinds: one table (KINDS) from a config's `kind` to its config class and layer builder.

Most kinds wrap target linears; a kind with a `site` attaches elsewhere (the prefix kinds: inside attention).
What else a kind is (its parameter counts, whether it is per task, its router heads, the module shapes it can
adapt) its config class says. CONFIGS, `linear_layers()` and `routed_layers()` are views of the table, read on
every use, so a row added to KINDS is seen everywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from torch import nn

from mhmoe.adapters.config import AdapterConfig, LowRankConfig
from mhmoe.adapters.lora import LoRAConfig, LoRALinear
from mhmoe.adapters.moe import HeadedMoELinear, LoRAMoEConfig, MHMoEConfig
from mhmoe.adapters.olora import OLoRAConfig, OLoRALinear
from mhmoe.adapters.prefix import AttentionSite, NoRGaConfig, PrefixBank, PrefixConfig
from mhmoe.errors import ConfigError


def _shared(config: LowRankConfig) -> dict[str, Any]:
    return {"rank": config.rank, "alpha": config.alpha, "dropout": config.dropout}


def _moe(config: LoRAMoEConfig) -> dict[str, Any]:
    return {
        **_shared(config),
        "experts": config.experts,
        "top_k": config.top_k,
        "heads": config.router_heads,
        "balance_coef": config.balance_coef,
        "gate": config.gate,
    }


def _olora(config: OLoRAConfig) -> dict[str, Any]:
    return {**_shared(config), "tasks": config.tasks}


class Site(Protocol):
    """Where a kind that wraps no linears attaches; inject.attach calls these in this order."""

    def shapes(self, model: nn.Module, config: Any) -> dict[str, list[int]]:
        """The adapted modules' shapes by name: recorded in a saved adapter, counted by accounting."""
        ...

    def modules(self, model: nn.Module, config: Any) -> dict[str, nn.Module]:
        """The new modules by the full name each takes, built without changing the model."""
        ...

    def prepare(self, model: nn.Module, config: Any) -> None:
        """Whatever else the model needs once the modules are in place."""
        ...


@dataclass(frozen=True)
class AdapterKind:
    """One adapter kind: its config class and how a config of it becomes a layer. Adding a kind is one row."""

    config: type[AdapterConfig]
    layer: type[nn.Module]
    """The layer class; its constructor takes the frozen base layer and plain keyword arguments."""
    arguments: Callable[[Any], dict[str, Any]] | None
    """The layer's keyword arguments from a config of this kind (None for a kind with a site, which builds its own)."""
    routed: bool = False
    """Whether the layer routes tokens to experts (route recording and the balance loss see it)."""
    site: Site | None = None
    """Where the kind attaches if not around target linears (then `layer` is the module it adds to each target)."""

    def build(self, config: AdapterConfig, base_layer: nn.Linear) -> nn.Module:
        if self.site is not None:
            raise ConfigError(f"adapter kind '{config.kind}' does not wrap linears; attach it with mhmoe.attach")
        return self.layer(base_layer, **self.arguments(config))


KINDS: dict[str, AdapterKind] = {
    k.config.kind: k
    for k in (
        AdapterKind(LoRAConfig, LoRALinear, _shared),
        AdapterKind(LoRAMoEConfig, HeadedMoELinear, _moe, routed=True),
        AdapterKind(MHMoEConfig, HeadedMoELinear, _moe, routed=True),
        AdapterKind(OLoRAConfig, OLoRALinear, _olora),
        AdapterKind(PrefixConfig, PrefixBank, None, site=AttentionSite()),
        AdapterKind(NoRGaConfig, PrefixBank, None, site=AttentionSite()),
    )
}


class _Configs(Mapping[str, type[AdapterConfig]]):
    """Each kind's config class by name, looked up in KINDS on every use."""

    def __getitem__(self, kind: str) -> type[AdapterConfig]:
        return KINDS[kind].config

    def __iter__(self) -> Iterator[str]:
        return iter(KINDS)

    def __len__(self) -> int:
        return len(KINDS)


CONFIGS: Mapping[str, type[AdapterConfig]] = _Configs()


def linear_layers() -> tuple[type[nn.Module], ...]:
    """The layer classes of the kinds that wrap linears: a module of one of these is an adapted linear."""
    return tuple(dict.fromkeys(k.layer for k in KINDS.values() if k.site is None))


def routed_layers() -> tuple[type[nn.Module], ...]:
    """The layer classes of the kinds that route tokens to experts."""
    return tuple(dict.fromkeys(k.layer for k in KINDS.values() if k.routed))


def __getattr__(name: str) -> Any:
    """ADAPTER_LAYERS and MOE_LAYERS, the views' constant names, computed from KINDS when read."""
    views = {"ADAPTER_LAYERS": linear_layers, "MOE_LAYERS": routed_layers}
    if name in views:
        return views[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_layer(config: AdapterConfig, base_layer: nn.Linear) -> nn.Module:
    """Wrap one frozen linear in the adapter the config describes."""
    if config.kind not in KINDS:
        raise ConfigError(f"adapter config: field 'kind' must be one of {sorted(KINDS)}, got {config.kind!r}")
    return KINDS[config.kind].build(config, base_layer)


def config_from_dict(data: dict[str, Any], source: str = "adapter config") -> AdapterConfig:
    """Rebuild a config from `to_dict()` output, naming the source on any unknown kind or field."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in CONFIGS:
        raise ConfigError(f"{source}: field 'kind' must be one of {sorted(CONFIGS)}, got {kind!r}")
    cls = CONFIGS[kind]
    known = {f.name for f in dataclasses.fields(cls)}  # not its class-level facts (size_field, per_task...)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {unknown} for kind '{kind}' (known: {sorted(known)})")
    return cls(**data)


__all__ = [
    "ADAPTER_LAYERS",
    "CONFIGS",
    "KINDS",
    "MOE_LAYERS",
    "AdapterConfig",
    "AdapterKind",
    "HeadedMoELinear",
    "LoRAConfig",
    "LoRALinear",
    "LoRAMoEConfig",
    "LowRankConfig",
    "MHMoEConfig",
    "NoRGaConfig",
    "OLoRAConfig",
    "OLoRALinear",
    "PrefixBank",
    "PrefixConfig",
    "build_layer",
    "config_from_dict",
    "linear_layers",
    "routed_layers",
]
