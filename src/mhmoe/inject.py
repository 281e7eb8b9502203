"""Attach adapters to any Hugging Face causal LM by module name, and save/load them as safetensors.

Like PEFT: the adapted linear stays inside the wrapper as `base_layer`, frozen; every adapter parameter
is named `adapter_*`, so freezing, counting and saving are each one filter over `named_parameters()`.
An adapter may also keep statistics as `adapter_*` buffers (the prefix kinds' task prototypes): saved and
restored with its parameters, never trained or counted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mhmoe.adapters import KINDS, AdapterConfig, Site, build_layer, config_from_dict, linear_layers
from mhmoe.adapters.config import matching_names
from mhmoe.errors import AdapterFileError, ConfigError
from mhmoe.files import atomic_write, write_json

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
ADAPTER_PREFIX = "adapter_"
FORMAT_VERSION = 1


def find_targets(model: nn.Module, patterns: list[str] | str) -> dict[str, nn.Linear]:
    """The linears `patterns` names, by module name; already-adapted modules count as their base layer."""
    targets, adapted, modules = {}, linear_layers(), dict(model.named_modules())
    for name in matching_names([n for n in modules if not n.endswith(".base_layer")], patterns):
        module = modules[name]
        if isinstance(module, adapted):
            targets[name] = module.base_layer
        elif isinstance(module, nn.Linear):
            targets[name] = module
    if not targets:
        linear_names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        suffixes = sorted({n.rsplit(".", 1)[-1] for n in linear_names})
        example = f" (e.g. '{linear_names[0]}')" if linear_names else ""
        raise ConfigError(
            f"field 'target_modules'={patterns!r} matches no linear module; "
            f"linear modules here end in {suffixes[:12]}{example}"
        )
    return targets


def _site(config: AdapterConfig) -> Site | None:
    kind = KINDS.get(config.kind)
    if kind is None:
        raise ConfigError(f"adapter config: field 'kind' must be one of {sorted(KINDS)}, got {config.kind!r}")
    return kind.site


def module_shapes(model: nn.Module, config: AdapterConfig) -> dict[str, list[int]]:
    """The shape of every module `config` adapts, by name: [in_features, out_features] of a target linear, or
    what the kind's site records (an attention module's [kv_heads, head_dim])."""
    site = _site(config)
    if site is not None:
        return site.shapes(model, config)
    return {name: [m.in_features, m.out_features] for name, m in find_targets(model, config.target_modules).items()}


def check_attachable(model: nn.Module, config: AdapterConfig) -> dict[str, list[int]]:
    """The shapes of the modules `config` would adapt, after checking it can adapt every one; changes nothing."""
    shapes = module_shapes(model, config)
    for name, (d_in, d_out) in shapes.items():
        config.check_shape(name, d_in, d_out)
    return shapes


def new_modules(model: nn.Module, config: AdapterConfig) -> dict[str, nn.Module]:
    """The modules attaching `config` puts into the model, by the full name each takes; the model is unchanged."""
    check_attachable(model, config)
    site = _site(config)
    if site is not None:
        return site.modules(model, config)
    return {name: build_layer(config, linear) for name, linear in find_targets(model, config.target_modules).items()}


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def attach(model: nn.Module, config: AdapterConfig) -> nn.Module:
    """Replace the target linears with adapted ones, freeze everything else, and return the model.

    Every target is validated before any module is replaced, so a bad config leaves the model untouched.
    """
    if getattr(model, "mhmoe_config", None) is not None:
        raise ConfigError(f"model already carries a '{model.mhmoe_config.kind}' adapter; attach to a fresh model")
    modules = new_modules(model, config)
    for param in model.parameters():
        param.requires_grad_(False)
    for name, module in modules.items():
        _set_submodule(model, name, module)
    site = _site(config)
    if site is not None:
        site.prepare(model, config)
    model.mhmoe_config = config
    return model


def _is_adapter(name: str) -> bool:
    return name.rsplit(".", 1)[-1].startswith(ADAPTER_PREFIX)


def adapter_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every adapter parameter of the model, by its full name."""
    return {n: p for n, p in model.named_parameters() if _is_adapter(n)}


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every adapter tensor by its full name: the parameters and the adapter's buffers (what is saved)."""
    return {**adapter_parameters(model), **{n: b for n, b in model.named_buffers() if _is_adapter(n)}}


def _attached_config(model: nn.Module) -> AdapterConfig:
    config = getattr(model, "mhmoe_config", None)
    if config is None:
        raise ConfigError("model carries no mhmoe adapter; call mhmoe.attach(model, config) first")
    return config


def _describe(model: nn.Module) -> dict[str, Any]:
    cfg = getattr(model, "config", None)
    return {"model_type": getattr(cfg, "model_type", None), "architecture": type(model).__name__}


def save_adapter(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write `adapter_config.json` and `adapter_model.safetensors` (adapter tensors only) into `directory`."""
    config = _attached_config(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {n: p.detach().contiguous().cpu() for n, p in adapter_state(model).items()}
    modules = module_shapes(model, config)
    meta = {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "base_model": _describe(model),
        "modules": modules,
    }
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(tensors, p, metadata={"format": "pt"}))
    write_json(directory / CONFIG_NAME, meta)
    return directory


def read_adapter_config(directory: str | os.PathLike) -> tuple[AdapterConfig, dict[str, Any]]:
    """The saved config and its metadata (base model, module shapes), with errors naming the file."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise AdapterFileError(f"{path}: not found (expected a folder written by mhmoe.save_adapter)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AdapterFileError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or "modules" not in meta:
        raise AdapterFileError(f"{path}: missing the 'config' or 'modules' entry")
    modules = meta["modules"]
    if not isinstance(modules, dict) or not all(
        isinstance(shape, list) and all(type(d) is int and d > 0 for d in shape) for shape in modules.values()
    ):
        raise AdapterFileError(f"{path}: field 'modules' must map module names to lists of positive sizes")
    if not isinstance(meta.get("base_model", {}), dict):
        raise AdapterFileError(f"{path}: field 'base_model' must be an object (model_type, name)")
    return config_from_dict(meta["config"], source=str(path)), meta


def _check_compatible(
    model: nn.Module, config: AdapterConfig, meta: dict[str, Any], path: Path
) -> dict[str, list[int]]:
    """The shapes of the modules `config` adapts in `model`, once checked against the saved ones."""
    saved_type = meta.get("base_model", {}).get("model_type")
    model_type = _describe(model)["model_type"]
    if saved_type and model_type and saved_type != model_type:
        raise AdapterFileError(f"{path}: adapter was trained on a '{saved_type}' model, not '{model_type}'")
    here = module_shapes(model, config)
    saved = meta["modules"]
    if here != saved:
        diff = sorted(n for n in set(here) | set(saved) if here.get(n) != saved.get(n))
        shown = ", ".join(f"{n}: saved {saved.get(n)} vs model {here.get(n)}" for n in diff[:3])
        raise AdapterFileError(f"{path}: adapted modules do not match this model ({len(diff)} differ; {shown})")
    return here


def _adapter_shapes(model: nn.Module, config: AdapterConfig) -> dict[str, torch.Size]:
    """The adapter tensors `config` gives this model, by full name, without changing the model."""
    if getattr(model, "mhmoe_config", None) is not None:
        return {n: p.shape for n, p in adapter_state(model).items()}
    return {
        f"{name}.{tensor_name}": tensor.shape
        for name, module in new_modules(model, config).items()
        for tensor_name, tensor in [*module.named_parameters(), *module.named_buffers()]
        if _is_adapter(tensor_name)
    }


def load_adapter(model: nn.Module, directory: str | os.PathLike) -> nn.Module:
    """Attach the saved adapter (if the model has none yet) and restore its tensors exactly.

    Everything is checked (config, model kind, module shapes, tensor names and shapes) before the model changes.
    """
    directory = Path(directory)
    config, meta = read_adapter_config(directory)
    shapes = _check_compatible(model, config, meta, directory / CONFIG_NAME)
    attached = getattr(model, "mhmoe_config", None)
    if attached is not None and attached != config:
        raise AdapterFileError(f"{directory / CONFIG_NAME}: model already carries a different adapter ({attached})")
    weights_path = directory / WEIGHTS_NAME
    try:
        tensors = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as err:
        raise AdapterFileError(f"{weights_path}: cannot be read as safetensors ({err})") from None
    if attached is None:  # building the modules allocates what the config implies: never more than the file holds
        implied = sum(config.total_parameters(d_in, d_out) for d_in, d_out in shapes.values())
        held = sum(t.numel() for t in tensors.values())
        if implied > held:
            raise AdapterFileError(
                f"{weights_path}: tensors do not fit this model (its config implies {implied:,} adapter values, "
                f"the file holds {held:,})"
            )
    expected = _adapter_shapes(model, config)
    bad = sorted(set(expected) ^ set(tensors)) + sorted(
        n for n in set(expected) & set(tensors) if expected[n] != tensors[n].shape
    )
    if bad:
        raise AdapterFileError(
            f"{weights_path}: tensors do not fit this model ({len(bad)} mismatched, e.g. {bad[:3]})"
        )
    if attached is None:
        attach(model, config)
    with torch.no_grad():
        for name, tensor in adapter_state(model).items():
            tensor.copy_(tensors[name])
    return model
