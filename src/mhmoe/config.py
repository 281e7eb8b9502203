"""Reading run settings: YAML files and presets, `--set key=value` overrides, and the field docs for --help.

The settings themselves are `mhmoe.settings` (re-exported here); `load_config` builds them and then runs the
checks that need the method and adapter registries, so every impossible setting stops a run at load time with
one line naming the field.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mhmoe.cl.entries import check_registries
from mhmoe.cl.methods import METHODS
from mhmoe.errors import ConfigError
from mhmoe.settings import (
    MODES,
    AnalysisSettings,
    DataSettings,
    EvalSettings,
    ModelSettings,
    RunConfig,
    StreamSettings,
    TrainSettings,
    build,
)

__all__ = [
    "DEFAULT_PRESET",
    "MODES",
    "AnalysisSettings",
    "DataSettings",
    "EvalSettings",
    "ModelSettings",
    "RunConfig",
    "StreamSettings",
    "TrainSettings",
    "describe_settings",
    "field_docs",
    "load_config",
    "preset_dir",
    "presets",
    "read_yaml",
    "select_entries",
]

DEFAULT_PRESET = "quickstart"


def _set(data: dict[str, Any], override: str) -> None:
    """Apply one 'a.b.c=value' to nested dicts; the value is parsed as YAML (numbers, lists, null...)."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {override!r}: expected key=value, e.g. train.lr=1e-3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    *parents, leaf = key.strip().split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {override!r}: '{part}' is not a section")
    node[leaf] = value


def preset_dir() -> Path:
    return Path(str(resources.files("mhmoe") / "configs"))


def presets() -> dict[str, Path]:
    """The YAML presets shipped with mhmoe, by name."""
    return {p.stem: p for p in sorted(preset_dir().glob("*.yaml"))}


def read_yaml(source: str | Path) -> dict[str, Any]:
    """A config file's mapping; `source` is a path or a preset name."""
    path = Path(source)
    if not path.is_file() and str(source) in presets():
        path = presets()[str(source)]
    if not path.is_file():
        raise ConfigError(f"{source}: config file not found (presets: {sorted(presets())})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def load_config(source: str | Path | None = DEFAULT_PRESET, overrides: list[str] = ()) -> RunConfig:
    """A validated RunConfig from a YAML file or preset (None: the defaults) and `key=value` overrides."""
    data = read_yaml(source) if source is not None else {}
    for override in overrides:
        _set(data, override)
    try:
        config = build(RunConfig, data)
        check_registries(config)
        return config
    except ConfigError as err:
        raise ConfigError(f"{source or 'config'}: {err}") from None


def select_entries(config: RunConfig, names: str | None) -> RunConfig:
    """`config` with only the named rows (`--methods`): any method, or any variant the config defines.

    'compare_to' is kept if it is selected, else the default reference applies.
    """
    if not names:
        return config
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    for name in wanted:
        if name not in config.variants and name not in METHODS:
            raise ConfigError(
                f"--methods: {name!r} is neither a method {sorted(METHODS)} nor a variant of this config "
                f"{sorted(config.variants)}"
            )
    data = config.to_dict() | {
        "methods": [name for name in wanted if name not in config.variants],
        "variants": {name: config.variants[name] for name in wanted if name in config.variants},
        "compare_to": config.compare_to if config.compare_to in wanted else None,
    }
    selected = build(RunConfig, data)
    check_registries(selected)
    return selected


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal right after it in the class body), for --help."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            docs[node.target.id] = " ".join(str(after.value.value).split())
    return docs


def describe_settings(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(key, default, docstring) of every setting, sections flattened with dots."""
    rows = []
    instance = cls()
    for f in dataclasses.fields(cls):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            rows += describe_settings(type(value), f"{prefix}{f.name}.")
        else:
            rows.append((prefix + f.name, value, field_docs(cls).get(f.name, "")))
    return rows
