"""The run folder: every path in it, whether it has finished, its creation (never over an earlier run), its
metrics log, and settings for trackers."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from accelerate import Accelerator

from mhmoe.cl.checkpoint import FOLDER as CHECKPOINTS
from mhmoe.cl.checkpoint import load_checkpoint
from mhmoe.cl.results import Results, RunResults, read_results, write_results
from mhmoe.distributed import process_state
from mhmoe.files import write_text
from mhmoe.settings import RunConfig


class RunFolder:
    """One run folder and every path in it; a multi-seed or repeated run nests seed-<s>/ and <condition>/ ones."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    config = property(lambda self: self.path / "config.yaml")
    results = property(lambda self: self.path / "results.json")
    report = property(lambda self: self.path / "report.md")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    plan = property(lambda self: self.path / "plan.json")
    """The run's fingerprint (top folder only): what a resume must match."""
    checkpoints = property(lambda self: self.path / CHECKPOINTS)

    def adapter(self, entry: str, segment: str) -> Path:
        """adapters/<entry>/<k>-<task> (or 'stream' without task boundaries)."""
        return self.path / "adapters" / entry / segment

    def seed(self, seed: int) -> RunFolder:
        return RunFolder(self.path / f"seed-{seed}")

    def condition(self, name: str) -> RunFolder:
        return RunFolder(self.path / name)

    def read(self) -> Results:
        return read_results(self.results)

    def write(self, results: Results) -> None:
        write_results(self.results, results)

    @property
    def finished(self) -> bool:
        """Its results are complete: a summary (written last), or one seed's run marked complete."""
        if not self.results.is_file():
            return False
        results = self.read()
        if isinstance(results, RunResults) and not results.complete:
            return self.report.is_file() and not self.checkpoints.exists()  # schema 1 had no flag
        return True

    def checkpoint(self, owner: dict[str, Any] | None = None):
        """The newest checkpoint (None when there is none); with `owner`, only one that run wrote."""
        return load_checkpoint(self.path, owner) if self.path.is_dir() else None

    def clear(self, keep: tuple[Path, ...] = ()) -> None:
        """Remove what an interrupted start left (rank 0), keeping the `keep` paths."""
        if process_state().is_main_process:
            for child in self.path.iterdir():
                if child in keep:
                    continue
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        process_state().wait_for_everyone()

    def begin(self, config: RunConfig, *, replace: bool = False) -> RunFolder:
        """Create (or, with `replace`, empty) the folder and write its config.yaml (rank 0 writes)."""
        state = process_state()
        if state.is_main_process:
            if replace:
                shutil.rmtree(self.path, ignore_errors=True)
            self.path.mkdir(parents=True, exist_ok=True)
            write_text(self.config, yaml.safe_dump(config.to_dict(), sort_keys=False))
        state.wait_for_everyone()
        return self


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
