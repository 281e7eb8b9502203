"""A continual-learning run: every method trains on the same stream, task after task, and after each task
every task of the stream is scored, filling R[i][j]. The untrained model's scores form the base row.

Everything that can be wrong (settings, data, model, adapter targets) is checked before the run folder is
created, so a bad input never leaves a half-written run behind.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from torch import nn

from mhmoe.accounting import count_parameters, matched_rank
from mhmoe.adapters import AdapterConfig
from mhmoe.cl.evaluate import score_stream
from mhmoe.cl.methods import METHODS, HookContext
from mhmoe.cl.report import write_report
from mhmoe.cl.train import train_task
from mhmoe.config import RunConfig
from mhmoe.data.stream import load_tasks
from mhmoe.data.trace import Task
from mhmoe.errors import ConfigError
from mhmoe.files import write_json, write_text
from mhmoe.inject import attach, check_attachable, save_adapter
from mhmoe.metrics import bwt, fwt, op
from mhmoe.models import load_model


def method_adapters(config: RunConfig, model: nn.Module, stream_length: int) -> dict[str, AdapterConfig]:
    """Each method's adapter config, its rank matched to `config.match_activated`'s activated parameters.

    An adapter with one LoRA per task (O-LoRA) gets one per task of the stream and is matched with all of
    them in the forward pass, as after the last task.
    """
    reference = config.adapter(config.match_activated) if config.match_activated else None
    adapters = {}
    for name in config.methods:
        kind = METHODS[name].adapter
        adapter = config.adapter(kind)
        if "tasks" in adapter.__dataclass_fields__:
            adapter = dataclasses.replace(adapter, tasks=stream_length)
        check_attachable(model, adapter)
        if reference is not None and kind != reference.kind:
            # Keep the kind's own alpha / rank: at a fixed alpha a larger rank would learn more slowly.
            rank = matched_rank(model, adapter, reference)
            adapter = dataclasses.replace(adapter, rank=rank, alpha=adapter.scaling * rank)
        adapters[name] = adapter
    return adapters


def new_run_dir(config: RunConfig, preset: str | None = None) -> Path:
    """A fresh run folder; an existing non-empty one is refused rather than overwritten."""
    name = config.name or f"{preset or '-'.join(config.methods)}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = Path(config.output_dir) / name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"{run_dir}: run folder exists and is not empty; choose another name (--set name=...)")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


class MetricsLog:
    """Appends one JSON line per record to metrics.jsonl and mirrors numbers to Accelerate's trackers."""

    def __init__(self, path: Path, accelerator: Accelerator):
        self.path, self.accelerator, self.steps = path, accelerator, {}
        self.started = time.perf_counter()

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


def train_method(
    name: str,
    adapter: AdapterConfig,
    base_model: nn.Module,
    tokenizer,
    tasks: list[Task],
    config: RunConfig,
    *,
    run_dir: Path,
    accelerator: Accelerator,
    log: MetricsLog,
) -> dict[str, Any]:
    """Train one method through the stream; returns its R matrix, parameter counts and timings."""
    torch.manual_seed(config.seed)  # the same adapter initialisation whatever ran before
    model = attach(copy.deepcopy(base_model), adapter)
    counts = count_parameters(model)
    model = accelerator.prepare(model)
    context = HookContext(
        tokenizer=tokenizer, max_length=config.train.max_length, seed=config.seed, batch_size=config.train.batch_size
    )
    hooks = METHODS[name].hooks(config.options(name), context)
    R, train_seconds, eval_seconds = [], 0.0, 0.0
    for index, task in enumerate(tasks):
        stats = train_task(
            model,
            tokenizer,
            task,
            config.train,
            accelerator=accelerator,
            hooks=hooks,
            seed=config.seed,
            task_index=index,
            log=lambda record: log({"event": "train", "method": name, **record}),
            progress=config.progress,
            label=f"{name} {index + 1}/{len(tasks)} {task.name}",
        )
        train_seconds += stats.seconds
        if accelerator.is_main_process:
            save_adapter(accelerator.unwrap_model(model), run_dir / "adapters" / name / f"{index + 1}-{task.name}")
        start = time.perf_counter()
        label = f"{name} evaluate after {index + 1}/{len(tasks)}"
        R.append(score_stream(model, tokenizer, tasks, config.eval, progress=config.progress, label=label))
        eval_seconds += time.perf_counter() - start
        log({"event": "eval", "method": name, "task": task.name, "after_task": index, "scores": R[-1], **vars(stats)})
    return {
        "adapter": adapter.to_dict(),
        "parameters": dataclasses.asdict(counts),
        "R": R,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
    }


def summarise(result: dict[str, Any], base: list[float]) -> dict[str, Any]:
    """Add OP, BWT and FWT to one method's result."""
    R = result["R"]
    return {**result, "op": op(R), "bwt": bwt(R), "fwt": fwt(R, base)}


def run(config: RunConfig, *, preset: str | None = None) -> Path:
    """Run every method of `config` on its stream; returns the run folder (results.json, report.md, ...)."""
    started = time.perf_counter()
    tasks = load_tasks(config.data, config.seed)
    base_model, tokenizer = load_model(config.model.name, config.model.torch_dtype)
    base_model.requires_grad_(False)
    adapters = method_adapters(config, base_model, len(tasks))
    run_dir = new_run_dir(config, preset)
    write_text(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    accelerator = Accelerator(log_with=config.log_with or None, project_dir=run_dir)
    if config.log_with:
        accelerator.init_trackers("tracking", config=_flat(config.to_dict()))
    log = MetricsLog(run_dir / "metrics.jsonl", accelerator)
    base_model.to(accelerator.device)
    base = score_stream(
        base_model, tokenizer, tasks, config.eval, progress=config.progress, label="untrained evaluate"
    )
    log({"event": "eval", "method": "untrained", "scores": base})
    results = {"tasks": [t.name for t in tasks], "model": config.model.name, "base": base, "methods": {}}
    for name, adapter in adapters.items():
        result = train_method(
            name, adapter, base_model, tokenizer, tasks, config, run_dir=run_dir, accelerator=accelerator, log=log
        )
        results["methods"][name] = summarise(result, base)
        results["seconds"] = time.perf_counter() - started
        if accelerator.is_main_process:
            write_json(run_dir / "results.json", results)
    if accelerator.is_main_process:
        write_report(run_dir, results)
    accelerator.end_training()
    return run_dir


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as flat 'a.b' keys with scalar values, as trackers want their hyperparameters."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat
