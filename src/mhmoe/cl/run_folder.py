"""The run folder: its creation (never over an earlier run), its metrics log, and settings for trackers."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from mhmoe.distributed import process_state
from mhmoe.errors import ConfigError
from mhmoe.settings import RunConfig


def new_run_dir(config: RunConfig, preset: str | None = None) -> Path:
    """A fresh run folder; an existing non-empty one is refused rather than overwritten.

    Under several processes the first one names the folder (the name may hold the time) and creates it;
    every process checks it first, so all of them stop alike on a used folder.
    """
    state = process_state()
    name = config.name or f"{preset or '-'.join(config.entry_names())}-{datetime.now():%Y%m%d-%H%M%S}"
    if state.num_processes > 1:
        name = broadcast_object_list([name])[0]
    run_dir = Path(config.output_dir) / name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"{run_dir}: run folder exists and is not empty; choose another name (--set name=...)")
    state.wait_for_everyone()
    if state.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    return run_dir


class MetricsLog:
    """Appends one JSON line per record to metrics.jsonl and mirrors numbers to Accelerate's trackers."""

    def __init__(self, path: Path, accelerator: Accelerator, *, resume_at: int | None = None):
        self.path, self.accelerator, self.steps = path, accelerator, {}
        self.started = time.perf_counter()
        if resume_at is not None and accelerator.is_main_process and path.exists():
            with path.open("r+b") as f:  # drop what was logged after the checkpoint: it is about to be redone
                f.truncate(resume_at)

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def __call__(self, record: dict[str, Any]) -> None:
        if not self.accelerator.is_main_process:
            return
        record = {**record, "elapsed_s": round(time.perf_counter() - self.started, 2)}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        method = record.get("method", "run")
        if record.get("event") == "train":
            self.steps[method] = step = self.steps.get(method, 0) + 1
            values = {f"{method}/{k}": v for k, v in record.items() if isinstance(v, float)}
            self.accelerator.log(values, step=step)


def flat_settings(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as flat 'a.b' keys with scalar values, as trackers want their hyperparameters."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flat_settings(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat
