"""A run's rows resolved against the registries, and the setting checks that need the registries.

`mhmoe.settings` checks what each field can check alone; whether a method, an adapter kind or one of its fields
exists is known only to `mhmoe.cl.methods.METHODS` and `mhmoe.adapters.KINDS`, which import torch. Those checks
live here, in `check_registries`, which `mhmoe.config.load_config` runs on every config it builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mhmoe.adapters import CONFIGS, AdapterConfig, config_from_dict
from mhmoe.cl.methods import METHODS
from mhmoe.errors import ConfigError
from mhmoe.metrics.catalog import METRICS
from mhmoe.settings import RunConfig, build
from mhmoe.variants import MATCH_MODES, Variant


@dataclass(frozen=True)
class Entry:
    """One row of a run, resolved: its name, method, adapter config (before matching), options and budget."""

    name: str
    method: str
    adapter: AdapterConfig
    options: Any
    match: str = "activated"


def check_registries(config: RunConfig) -> None:
    """Raise a one-line ConfigError unless every method, adapter kind, adapter field, method option and variant
    of `config` exists, and every method can run in the stream modes asked for: all now, not mid-run."""
    for method in config.methods:
        if method not in METHODS:
            raise ConfigError(f"run config: field 'methods' has unknown method {method!r} (known: {sorted(METHODS)})")
    if config.match_activated is not None and config.match_activated not in CONFIGS:
        raise ConfigError(
            f"run config: field 'match_activated' must be an adapter kind {sorted(CONFIGS)}, "
            f"got {config.match_activated!r}"
        )
    if "taskfree" in config.modes or not config.stream.boundaries:
        for name in config.entry_names():
            method = config.method_of(name)
            if method in METHODS and METHODS[method].needs_tasks:
                raise ConfigError(
                    f"run config: {name!r} cannot run without task boundaries: method {method!r} "
                    f"{METHODS[method].needs_tasks}"
                )
    for index, claim in enumerate(config.declared_claims()):
        if claim.metric not in METRICS:
            raise ConfigError(
                f"run config: field 'claims[{index}].metric' must be one of {sorted(METRICS)}, got {claim.metric!r}"
            )
    for kind in config.adapters:
        adapter_config(config, kind)
    for method in config.method_options:
        method_options(config, method)
    for entry in resolve_entries(config):
        if config.stream.schedule == "stream" and entry.adapter.per_task:
            raise ConfigError(
                f"run config: {entry.name!r} cannot share one optimizer over the stream (stream.schedule "
                "'stream'): it trains other parameters on each task"
            )


def resolve_entries(config: RunConfig) -> list[Entry]:
    """Every row of the run, resolved: the plain methods, then the variants with their own fields."""
    rows = [Entry(m, m, adapter_config(config, METHODS[m].adapter), method_options(config, m)) for m in config.methods]
    for name, raw in config.variants.items():
        where = f"variants.{name}"
        try:
            variant = build(Variant, raw, f"{where}.")
        except (ConfigError, TypeError) as err:
            message = str(err) if isinstance(err, ConfigError) else f"field '{where}' needs a 'method'"
            raise ConfigError(f"run config: {message}") from None
        if variant.method not in METHODS:
            raise ConfigError(
                f"run config: field '{where}.method' has unknown method {variant.method!r} (known: {sorted(METHODS)})"
            )
        if variant.match not in MATCH_MODES:
            raise ConfigError(
                f"run config: field '{where}.match' must be one of {list(MATCH_MODES)}, got {variant.match!r}"
            )
        kind = METHODS[variant.method].adapter
        if "kind" in variant.adapter:
            raise ConfigError(f"run config: field '{where}.adapter.kind': the kind follows the method ({kind})")
        fields = {**adapter_config(config, kind).to_dict(), **variant.adapter}
        adapter = config_from_dict(fields, source=f"run config '{where}.adapter'")
        options = method_options(config, variant.method, variant.method_options, where=f"{where}.method_options")
        rows.append(Entry(name, variant.method, adapter, options, variant.match))
    return rows


def adapter_config(config: RunConfig, kind: str) -> AdapterConfig:
    """The validated adapter config of one kind, from `adapters.<kind>`."""
    if kind not in CONFIGS:
        raise ConfigError(f"run config: field 'adapters' has unknown adapter kind {kind!r} (known: {sorted(CONFIGS)})")
    fields = config.adapters.get(kind) or {}
    if not isinstance(fields, dict):
        raise ConfigError(f"run config: field 'adapters.{kind}' must be a mapping of fields, got {fields!r}")
    if fields.get("kind", kind) != kind:  # a kind set under another kind's name would train under that name
        raise ConfigError(
            f"run config: field 'adapters.{kind}.kind' is {fields['kind']!r}; the section's name is the kind "
            f"(set adapters.{fields['kind']} and the method that trains it instead)"
        )
    return config_from_dict({**fields, "kind": kind}, source=f"run config 'adapters.{kind}'")


def method_options(config: RunConfig, method: str, extra: dict[str, Any] | None = None, *, where: str = "") -> Any:
    """The validated options of one method (None for methods without any), `extra` replacing fields."""
    if method not in METHODS:
        raise ConfigError(f"run config: field 'method_options' has unknown method {method!r}")
    where = where or f"method_options.{method}"
    base = config.method_options.get(method) or {}
    if not isinstance(base, dict) or not isinstance(extra or {}, dict):
        raise ConfigError(f"run config: field '{where}' must be a mapping of fields")
    cls, fields = METHODS[method].options, {**base, **(extra or {})}
    if cls is None:
        if fields:
            raise ConfigError(f"run config: method {method!r} takes no options, got '{where}'")
        return None
    try:
        return build(cls, fields, f"{where}.")
    except ConfigError as err:
        raise ConfigError(f"run config: {err}") from None
