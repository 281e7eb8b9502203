"""mhmoe: continual fine-tuning of language models with multi-head mixture-of-experts LoRA adapters.

The public names are imported on first use (PEP 562), so `import mhmoe.settings` or `import mhmoe.errors` does
not pull in torch; `mhmoe.attach(...)` and `from mhmoe import attach` work as before.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_OWNERS = {
    "mhmoe.accounting": [
        "ParameterCount",
        "activated_parameters",
        "count_parameters",
        "matched_rank",
        "matched_size",
        "total_parameters",
    ],
    "mhmoe.adapters": ["LoRAConfig", "LoRAMoEConfig", "MHMoEConfig", "NoRGaConfig", "PrefixConfig"],
    "mhmoe.errors": ["AdapterFileError", "ConfigError", "MhmoeError", "ModelLoadError"],
    "mhmoe.inject": ["adapter_parameters", "adapter_state", "attach", "load_adapter", "save_adapter"],
    "mhmoe.observe": ["collect_balance", "record_routes"],
}
_OWNER = {name: module for module, names in _OWNERS.items() for name in names}

__all__ = sorted(_OWNER)


def __getattr__(name: str) -> Any:
    if name not in _OWNER:
        raise AttributeError(f"module 'mhmoe' has no attribute {name!r}")
    value = getattr(importlib.import_module(_OWNER[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
