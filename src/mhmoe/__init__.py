"""mhmoe: continual fine-tuning of language models with multi-head mixture-of-experts LoRA adapters."""

from mhmoe.accounting import (
    ParameterCount,
    activated_parameters,
    count_parameters,
    matched_rank,
    matched_size,
    total_parameters,
)
from mhmoe.adapters import LoRAConfig, LoRAMoEConfig, MHMoEConfig, NoRGaConfig, PrefixConfig
from mhmoe.errors import AdapterFileError, ConfigError, MhmoeError, ModelLoadError
from mhmoe.inject import adapter_parameters, adapter_state, attach, load_adapter, save_adapter
from mhmoe.observe import collect_balance, record_routes

__version__ = "0.1.0"

__all__ = [
    "AdapterFileError",
    "ConfigError",
    "LoRAConfig",
    "LoRAMoEConfig",
    "MHMoEConfig",
    "MhmoeError",
    "ModelLoadError",
    "NoRGaConfig",
    "ParameterCount",
    "PrefixConfig",
    "activated_parameters",
    "adapter_parameters",
    "adapter_state",
    "attach",
    "collect_balance",
    "count_parameters",
    "load_adapter",
    "matched_rank",
    "matched_size",
    "record_routes",
    "save_adapter",
    "total_parameters",
]
