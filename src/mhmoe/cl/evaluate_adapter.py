"""`mhmoe eval`: score a saved adapter on a stream, by default the stream and model of the run it came from."""

from __future__ import annotations

import sys
from pathlib import Path

from mhmoe.cl.evaluate import StreamRow, evaluate_stream
from mhmoe.config import DEFAULT_PRESET, load_config
from mhmoe.data.stream import load_tasks
from mhmoe.inject import load_adapter, read_adapter_config
from mhmoe.models import load_model


def run_config_of(adapter_dir: Path) -> Path | None:
    """The config.yaml of the run folder an adapter was saved in (runs/<name>/adapters/<method>/<task>)."""
    for parent in list(adapter_dir.resolve().parents)[:4]:
        if (parent / "config.yaml").is_file():
            return parent / "config.yaml"
    return None


def evaluate_adapter(
    adapter_dir: str | Path, config: str | Path | None = None, overrides: list[str] = (), *, progress: bool = False
) -> tuple[list[str], StreamRow]:
    """The task names of the configured stream and the adapter's score, its error and answer loss on each.

    An adapter inside a multi-seed run's seed-<s>/ folder finds that folder's config.yaml, whose seed is s.
    """
    adapter_dir = Path(adapter_dir)
    read_adapter_config(adapter_dir)  # a missing or corrupt adapter fails before the model loads
    source = config or run_config_of(adapter_dir) or DEFAULT_PRESET
    settings = load_config(source, overrides)
    if progress:  # what chooses the model and the stream: say which file it was
        print(f"mhmoe eval: settings from {source}", file=sys.stderr)
    tasks = load_tasks(settings.data, settings.seed)
    model, tokenizer = load_model(settings.model.name, settings.model.torch_dtype)
    load_adapter(model, adapter_dir)
    row = evaluate_stream(  # the run's seed draws the bootstrap of the errors, as in the run's R_se
        model,
        tokenizer,
        tasks,
        settings.eval,
        max_length=settings.train.max_length,
        progress=progress and settings.progress,
        seed=settings.seed,
    )
    return [t.name for t in tasks], row
