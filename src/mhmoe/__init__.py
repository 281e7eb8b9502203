"""mhmoe: continual fine-tuning of language models with multi-head mixture-of-experts LoRA adapters."""

from mhmoe.accounting import ParameterCount, activated_parameters, count_parameters, matched_rank, total_parameters
from mhmoe.adapters import LoRAConfig, LoRAMoEConfig, MHMoEConfig
from mhmoe.errors import AdapterFileError, ConfigError, MhmoeError, ModelLoadError
from mhmoe.inject import adapter_parameters, attach, load_adapter, save_adapter
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
    "ParameterCount",
    "activated_parameters",
    "adapter_parameters",
    "attach",
    "collect_balance",
    "count_parameters",
    "load_adapter",
    "matched_rank",
    "record_routes",
    "save_adapter",
    "total_parameters",
]
