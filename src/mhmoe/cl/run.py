"""A continual-learning run: every method trains on the same stream, task after task, and after each task
every task of the stream is scored, filling R[i][j]. The untrained model's scores form the base row.

Everything that can be wrong (settings, data, model, adapter targets) is checked before the run folder is
created, so a bad input never leaves a half-written run behind.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from torch import nn

from mhmoe.accounting import count_parameters, matched_size
from mhmoe.adapters import AdapterConfig
from mhmoe.cl.anytime import add_row, anytime_metrics, empty_record, is_due, stream_plan
from mhmoe.cl.checkpoint import (
    Checkpoint,
    Position,
    clear_checkpoints,
    latest_folder,
    load_checkpoint,
    save_checkpoint,
)
from mhmoe.cl.conditions import summarise_conditions, write_conditions_report
from mhmoe.cl.entries import Entry, adapter_config, resolve_entries
from mhmoe.cl.evaluate import evaluate_stream, majority_answer_score
from mhmoe.cl.methods import METHODS, HookContext
from mhmoe.cl.report import write_report
from mhmoe.cl.router_facts import ROUTERS_FIXED_NOTE, expert_load, router_gradients, routers_fixed
from mhmoe.cl.run_folder import MetricsLog, flat_settings, new_run_dir
from mhmoe.cl.seeds import summarise_seeds, write_seeds_report
from mhmoe.cl.train import TrainingError, steps_per_task, train_steps, train_task
from mhmoe.config import RunConfig, load_config
from mhmoe.data.stream import load_tasks
from mhmoe.data.trace import Task
from mhmoe.distributed import cpu_only, process_state
from mhmoe.errors import CheckpointError, ConfigError
from mhmoe.files import write_json, write_text
from mhmoe.inject import adapter_state, attach, check_attachable, save_adapter
from mhmoe.metrics import bwt, forgetting_curves, fwt, loss_bwt, op
from mhmoe.models import load_model
from mhmoe.observe import moe_layers


def matched_entries(config: RunConfig, model: nn.Module, stream_length: int) -> dict[str, Entry]:
    """Each entry (method or variant) by name, its adapter's size (rank, or prefix length) matched to
    `config.match_activated`'s.

    An entry is matched by its own budget (activated or total parameters, or not at all); one already equal to
    the reference is left as it is. An adapter with one part per task (O-LoRA's LoRAs, the prefix kinds'
    prefixes) gets one per task of the stream; O-LoRA is matched with all of them in the forward pass, as
    after the last task, a prefix method with one task's prefixes, which is all a token sees.
    """
    reference = adapter_config(config, config.match_activated) if config.match_activated else None
    entries = {}
    for entry in resolve_entries(config):
        adapter = entry.adapter
        if "tasks" in adapter.__dataclass_fields__:
            adapter = dataclasses.replace(adapter, tasks=stream_length)
        check_attachable(model, adapter)
        if reference is not None and entry.match != "none" and adapter != reference:
            adapter = adapter.resized(matched_size(model, adapter, reference, entry.match))
        entries[entry.name] = dataclasses.replace(entry, adapter=adapter)
    return entries


PER_TASK_KINDS = ("olora", "prefix", "norga")
"""Adapter kinds that train a different part of themselves on each task."""


def check_processes(config: RunConfig) -> None:
    """Every process must get an equal share of each optimizer step's examples."""
    world = process_state().num_processes
    per_step = config.train.batch_size * config.train.grad_accum
    if per_step % world:
        raise ConfigError(
            f"train.batch_size * train.grad_accum = {per_step} examples per step do not split evenly over "
            f"{world} processes"
        )
    for entry in resolve_entries(config):
        if world > 1 and METHODS[entry.method].adapter in PER_TASK_KINDS:
            raise ConfigError(
                f"method '{entry.method}' changes which parameters train between tasks, which DDP cannot follow"
            )


@dataclass
class RunContext:
    """What every method's training shares within one run."""

    run_dir: Path
    config: RunConfig
    tasks: list[Task]
    tokenizer: Any
    accelerator: Accelerator
    log: MetricsLog
    results: dict[str, Any]

    def checkpoint(
        self, position: Position, *, model=None, hooks=None, rows=None, seconds=None, optimizer=None, scheduler=None
    ):
        """Save the run's state at `position` (rank 0 writes; every process waits for it)."""
        if self.accelerator.is_main_process:
            training = None
            if hooks is not None:
                training = {"hooks": hooks.state_dict(), "rng": torch.get_rng_state()}
                if torch.cuda.is_available():  # dropout on a GPU draws from its own generators
                    training["cuda_rng"] = torch.cuda.get_rng_state_all()
                if optimizer is not None:
                    training |= {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
            adapter = adapter_state(self.accelerator.unwrap_model(model)) if model is not None else None
            save_checkpoint(
                self.run_dir,
                Checkpoint(
                    position, self.results, dict(rows or {}), dict(seconds or {}), self.log.size(), adapter, training
                ),
            )
        self.accelerator.wait_for_everyone()


def _restore(model: nn.Module, hooks, resume: Checkpoint) -> None:
    """Put the adapter, the hooks' state and the RNG back as the checkpoint holds them."""
    params = adapter_state(model)
    if resume.adapter is None or set(resume.adapter) != set(params):
        raise CheckpointError("checkpoint: its adapter tensors do not match this run's adapter")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(resume.adapter[name])
    hooks.load_state_dict(resume.training["hooks"])
    torch.set_rng_state(resume.training["rng"])
    if "cuda_rng" in resume.training and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(resume.training["cuda_rng"])


def evaluate_run_stream(model: nn.Module, tokenizer: Any, tasks: list[Task], config: RunConfig, label: str):
    """One row of R, its errors and one row of L, with the run's evaluation settings and seed."""
    return evaluate_stream(
        model,
        tokenizer,
        tasks,
        config.eval,
        max_length=config.train.max_length,
        progress=config.progress,
        label=label,
        seed=config.seed,
    )


def fresh_adapter(base_model: nn.Module, adapter: AdapterConfig, seed: int) -> nn.Module:
    """A copy of the base model with a newly initialised adapter: the same for a seed whatever ran before."""
    torch.manual_seed(seed)
    return attach(copy.deepcopy(base_model), adapter)


def _hooks_for(entry: Entry, config: RunConfig, tokenizer: Any, tasks: int):
    context = HookContext(
        tokenizer=tokenizer,
        max_length=config.train.max_length,
        seed=config.seed,
        batch_size=config.train.batch_size,
        boundaries=config.stream.boundaries,
        consolidate_every=config.stream.consolidate_every,
        tasks=tasks,
    )
    return METHODS[entry.method].hooks(entry.options, context)


def _router_facts(plain: nn.Module, adapter: AdapterConfig, ctx: RunContext, grads: dict) -> dict | None:
    """Did the routers train, and how evenly do they spread the test tokens (None without routers)."""
    if not moe_layers(plain):
        return None
    config = ctx.config
    load = expert_load(
        plain,
        ctx.tokenizer,
        ctx.tasks,
        config.eval.split,
        batch_size=config.eval.batch_size,
        max_length=config.train.max_length,
    )
    return {
        "fixed_by_design": routers_fixed(adapter),
        "trained": {layer: grads.get(layer, 0.0) > 0 for layer in load},
        "max_grad": grads,
        "load": load,
    }


class AnytimeScorer:
    """Scores every task mid-stream for one method's anytime record, without touching training's randomness."""

    def __init__(self, name: str, plain: nn.Module, ctx: RunContext, done: dict, seconds: dict) -> None:
        self.name, self.plain, self.ctx, self.done, self.seconds = name, plain, ctx, done, seconds

    def __call__(self, step: int) -> None:
        began = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            row = evaluate_run_stream(
                self.plain, self.ctx.tokenizer, self.ctx.tasks, self.ctx.config, f"{self.name} step {step}"
            )
        self.plain.train()
        self.record(step, row)
        self.seconds["eval"] += time.perf_counter() - began

    def record(self, step: int, row) -> None:
        add_row(self.done["anytime"], step, row)
        self.ctx.log(
            {
                "event": "anytime",
                "method": self.name,
                "step": step,
                "scores": row.scores,
                "errors": row.errors,
                "losses": row.losses,
            }
        )


def train_method(
    index: int, entry: Entry, base_model: nn.Module, ctx: RunContext, resume: Checkpoint | None
) -> dict[str, Any]:
    """Train one entry (a method or a variant) through the stream (from `resume`'s position, if given).

    Returns R with each entry's standard error, the loss matrix L, the anytime record (with
    stream.eval_every), the router facts, counts and timings.
    """
    config, tasks, tokenizer, accelerator = ctx.config, ctx.tasks, ctx.tokenizer, ctx.accelerator
    if not config.stream.boundaries:
        return train_method_taskfree(index, entry, base_model, ctx, resume)
    name, adapter = entry.name, entry.adapter
    model = fresh_adapter(base_model, adapter, config.seed)
    counts = count_parameters(model)
    hooks = _hooks_for(entry, config, tokenizer, len(tasks))
    done: dict[str, Any] = {"R": [], "R_se": [], "L": [], "router_grad": {}, "anytime": empty_record()}
    seconds = {"train": 0.0, "eval": 0.0}
    start = Position(index, 0, 0)
    if resume is not None:
        _restore(model, hooks, resume)
        done, seconds, start = copy.deepcopy(resume.rows), dict(resume.seconds), resume.position
    plain = model
    model = accelerator.prepare(model)
    every, eval_every = config.train.checkpoint_every, config.stream.eval_every
    task_steps = [steps_per_task(config.train, len(task.split("train"))) for task in tasks]
    offsets, total = [sum(task_steps[:i]) for i in range(len(tasks))], sum(task_steps)
    anytime = AnytimeScorer(name, plain, ctx, done, seconds)

    def save(task_index: int, step: int, optimizer=None, scheduler=None) -> None:
        state = {"model": model, "hooks": hooks, "rows": done, "seconds": seconds}
        ctx.checkpoint(Position(index, task_index, step), **state, optimizer=optimizer, scheduler=scheduler)

    def on_step(task_index: int, step: int, optimizer, scheduler) -> None:
        if step == task_steps[task_index]:
            return  # the task's end: scored for R right after, and that row serves the anytime record too
        if is_due(offsets[task_index] + step, total, eval_every):
            anytime(offsets[task_index] + step)
        if every and step % every == 0:
            save(task_index, step, optimizer, scheduler)

    for task_index in range(start.task, len(tasks)):
        task = tasks[task_index]
        steps = task_steps[task_index]
        step_done = start.step if task_index == start.task else 0
        stats = {}
        if step_done < steps:
            partial = None
            if step_done > 0:
                partial = {"step": step_done, **{k: resume.training[k] for k in ("optimizer", "scheduler")}}
            with router_gradients(plain, done["router_grad"]):
                trained = train_task(
                    model,
                    tokenizer,
                    task,
                    config.train,
                    accelerator=accelerator,
                    hooks=hooks,
                    seed=config.seed,
                    task_index=task_index,
                    log=lambda record: ctx.log({"event": "train", "method": name, **record}),
                    progress=config.progress,
                    label=f"{name} {task_index + 1}/{len(tasks)} {task.name}",
                    resume=partial,
                    on_step=lambda step, opt, sch, t=task_index: on_step(t, step, opt, sch),
                )
            seconds["train"] += trained.seconds
            stats = vars(trained)
            if accelerator.is_main_process:
                folder = ctx.run_dir / "adapters" / name / f"{task_index + 1}-{task.name}"
                save_adapter(plain, folder)
            save(task_index, steps)  # trained; a kill while scoring resumes here
        began = time.perf_counter()
        label = f"{name} evaluate after {task_index + 1}/{len(tasks)}"
        row = evaluate_run_stream(plain, tokenizer, tasks, config, label)
        done["R"].append(row.scores)
        done["R_se"].append(row.errors)
        done["L"].append(row.losses)
        done.setdefault("identified", []).append(row.identified)
        seconds["eval"] += time.perf_counter() - began
        ctx.log(
            {
                "event": "eval",
                "method": name,
                "task": task.name,
                "after_task": task_index,
                "scores": row.scores,
                "errors": row.errors,
                "losses": row.losses,
                **stats,
            }
        )
        if is_due(offsets[task_index] + steps, total, eval_every):
            anytime.record(offsets[task_index] + steps, row)
        save(task_index + 1, 0)
    result = {
        "method": entry.method,
        "match": entry.match,
        "boundaries": True,
        "adapter": adapter.to_dict(),
        "parameters": dataclasses.asdict(counts),
        "R": done["R"],
        "R_se": done["R_se"],
        "L": done["L"],
        "identified": _identified(done),
        "router": _router_facts(plain, adapter, ctx, done["router_grad"]),
        "train_seconds": seconds["train"],
        "eval_seconds": seconds["eval"],
    }
    if eval_every:
        result["anytime"] = done["anytime"]
    return result


def train_method_taskfree(
    index: int, entry: Entry, base_model: nn.Module, ctx: RunContext, resume: Checkpoint | None
) -> dict[str, Any]:
    """Train one entry on the whole stream as one boundary-free plan of steps, scored every eval_every steps.

    The hooks never hear of a task: no before_task or after_task, only after_step(model, examples).
    """
    config, tasks, tokenizer, accelerator = ctx.config, ctx.tasks, ctx.tokenizer, ctx.accelerator
    name, adapter = entry.name, entry.adapter
    model = fresh_adapter(base_model, adapter, config.seed)
    counts = count_parameters(model)
    hooks = _hooks_for(entry, config, tokenizer, len(tasks))
    plan = stream_plan(tasks, config.train, config.stream.blur, config.seed)
    done: dict[str, Any] = {"router_grad": {}, "anytime": empty_record()}
    seconds = {"train": 0.0, "eval": 0.0}
    step_done = 0
    if resume is not None:
        _restore(model, hooks, resume)
        done, seconds, step_done = copy.deepcopy(resume.rows), dict(resume.seconds), resume.position.step
    plain = model
    model = accelerator.prepare(model)
    every, total = config.train.checkpoint_every, len(plan)
    anytime = AnytimeScorer(name, plain, ctx, done, seconds)

    def on_step(step: int, optimizer, scheduler) -> None:
        if is_due(step, total, config.stream.eval_every):
            anytime(step)
        if step == total and accelerator.is_main_process:
            save_adapter(plain, ctx.run_dir / "adapters" / name / "stream")
        if step == total or (every and step % every == 0):
            state = {"model": model, "hooks": hooks, "rows": done, "seconds": seconds}
            ctx.checkpoint(Position(index, 0, step), **state, optimizer=optimizer, scheduler=scheduler)

    if step_done < total:
        partial = None
        if step_done > 0:
            partial = {"step": step_done, **{k: resume.training[k] for k in ("optimizer", "scheduler")}}
        with router_gradients(plain, done["router_grad"]):
            trained = train_steps(
                model,
                tokenizer,
                plan,
                config.train,
                accelerator=accelerator,
                hooks=hooks,
                log=lambda record: ctx.log({"event": "train", "method": name, **record}),
                progress=config.progress,
                label=f"{name} stream without boundaries (blur {config.stream.blur})",
                resume=partial,
                on_step=on_step,
                after_step=lambda examples: hooks.after_step(plain, examples),
            )
        seconds["train"] += trained.seconds
    return {
        "method": entry.method,
        "match": entry.match,
        "boundaries": False,
        "blur": config.stream.blur,
        "adapter": adapter.to_dict(),
        "parameters": dataclasses.asdict(counts),
        "anytime": done["anytime"],
        "router": _router_facts(plain, adapter, ctx, done["router_grad"]),
        "train_seconds": seconds["train"],
        "eval_seconds": seconds["eval"],
    }


def _identified(done: dict[str, Any]) -> list[list[float | None]] | None:
    """Task-identification accuracy after each task, per task; None for a method that never infers a task."""
    rows = done.get("identified", [])
    return rows if any(v is not None for row in rows for v in row) else None


def summarise(result: dict[str, Any], base: list[float]) -> dict[str, Any]:
    """Add OP, BWT, FWT, loss-BWT and each task's loss forgetting curve (from R and L, with task boundaries)
    and the anytime metrics (from the anytime record, with stream.eval_every) to one method's result."""
    summary = dict(result)
    if "R" in result:
        R, L = result["R"], result["L"]
        summary |= {
            "op": op(R),
            "bwt": bwt(R),
            "fwt": fwt(R, base),
            "loss_bwt": loss_bwt(L),
            "loss_curves": forgetting_curves(L),
        }
        if len(R) > 1:  # how well the earlier tasks were learned: what BWT and loss-BWT start from
            earlier = range(len(R) - 1)
            summary["learned"] = sum(R[i][i] for i in earlier) / len(earlier)
            summary["learned_loss"] = sum(L[i][i] for i in earlier) / len(earlier)
    if "anytime" in result:
        summary |= anytime_metrics(result["anytime"])
    return summary


def _saved_config(run_dir: Path) -> RunConfig:
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise CheckpointError(f"{config_path}: not found; --resume needs a run folder written by `mhmoe run`")
    return load_config(config_path)


def _resumable(run_dir: Path) -> Checkpoint:
    """The newest checkpoint of an interrupted single-seed run, or a one-line reason why there is none."""
    checkpoint = load_checkpoint(run_dir)
    if checkpoint is None:
        finished = (run_dir / "report.md").is_file()
        reason = "the run has finished" if finished else "it was stopped before its first checkpoint; start it again"
        raise CheckpointError(f"{run_dir}: nothing to resume ({reason})")
    return checkpoint


@dataclass
class Shared:
    """What every seed of a run reuses: the frozen base model, its tokenizer and each entry, matched."""

    base_model: nn.Module
    tokenizer: Any
    entries: dict[str, Entry]


def run(config: RunConfig | None = None, *, preset: str | None = None, resume: str | Path | None = None) -> Path:
    """Run every method of `config` on its stream, once per seed (and per order), or continue the interrupted
    run `resume`.

    One seed writes its run folder directly; several seeds write one complete single-seed run folder per seed
    (`seed-<s>/`) and, at the top, results.json and report.md with the intervals over seeds. With `orders` or
    `modes`, each order or mode is such a run in its own folder, and the top compares the methods across them.
    Returns the run folder. A resumed run ends with the same results as an uninterrupted one: it restarts from
    the newest checkpoint with the same data order, state and RNG.
    """
    run_dir = None
    if resume is not None:
        run_dir = Path(resume)
        config = _saved_config(run_dir)
    check_processes(config)
    configs = config.conditions()
    # every order's and seed's data is checked before the model loads or a folder is written
    streams = {name: {seed: load_tasks(c.data, seed) for seed in c.seed_list()} for name, c in configs.items()}
    base_model, tokenizer = load_model(config.model.name, config.model.torch_dtype)
    base_model.requires_grad_(False)
    length = len(next(iter(next(iter(streams.values())).values())))
    shared = Shared(base_model, tokenizer, matched_entries(config, base_model, length))
    fixed = [name for name, entry in shared.entries.items() if routers_fixed(entry.adapter)]
    if fixed and process_state().is_main_process:
        print(f"mhmoe: note: {', '.join(fixed)}: {ROUTERS_FIXED_NOTE}", file=sys.stderr)
    repeated = None not in configs  # one complete run per order or per mode
    if not repeated and len(config.seed_list()) == 1:
        checkpoint = _resumable(run_dir) if resume is not None else None
        if run_dir is None:
            run_dir = _new_folder(new_run_dir(config, preset), config)
        run_seed(config, run_dir, streams[None][config.seed], shared, checkpoint)
        return run_dir
    if run_dir is not None and (run_dir / "report.md").is_file():
        raise CheckpointError(f"{run_dir}: nothing to resume (the run has finished)")
    if run_dir is None:
        run_dir = _new_folder(new_run_dir(config, preset), config)
    if not repeated:
        _run_seeds(config, run_dir, streams[None], shared)
        return run_dir
    per_condition = {}
    for name, condition in configs.items():
        folder = run_dir / name
        condition = dataclasses.replace(condition, name=f"{run_dir.name}/{name}")
        if len(condition.seed_list()) == 1:
            seed = condition.seed
            per_condition[name] = summarise_seeds(
                {seed: _resume_or_start(condition, folder, streams[name][seed], shared)},
                condition.reference_method(),
            )
        elif (folder / "report.md").is_file():
            per_condition[name] = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        else:
            if not folder.is_dir():
                _new_folder(folder, condition)
            per_condition[name] = _run_seeds(condition, folder, streams[name], shared)
    if process_state().is_main_process:
        kind = "order" if config.orders else "mode"
        summary = summarise_conditions(per_condition, config.reference_method(), kind)
        write_json(run_dir / "results.json", summary)
        write_conditions_report(run_dir, summary)
    return run_dir


def _resume_or_start(config: RunConfig, folder: Path, tasks: list[Task], shared: Shared) -> dict[str, Any]:
    """A single-seed run in `folder`: finished, its results; checkpointed, resumed; else started afresh."""
    if (folder / "report.md").is_file():
        return json.loads((folder / "results.json").read_text(encoding="utf-8"))
    checkpoint = load_checkpoint(folder) if folder.is_dir() else None
    if checkpoint is None:  # never started, or stopped before its first checkpoint
        _new_folder(folder, config, replace=True)
    return run_seed(config, folder, tasks, shared, checkpoint)


def _run_seeds(config: RunConfig, run_dir: Path, streams: dict[int, list[Task]], shared: Shared) -> dict[str, Any]:
    """Every seed of `config` in `run_dir`/seed-<s>/, then the top results.json and report.md over seeds."""
    per_seed = {}
    for seed in config.seed_list():
        seed_config = dataclasses.replace(
            config, seed=seed, seeds=[], name=f"{config.name or run_dir.name}/seed-{seed}"
        )
        per_seed[seed] = _resume_or_start(seed_config, run_dir / f"seed-{seed}", streams[seed], shared)
    summary = summarise_seeds(per_seed, config.reference_method())
    if process_state().is_main_process:
        write_json(run_dir / "results.json", summary)
        write_seeds_report(run_dir, summary)
    return summary


def _new_folder(run_dir: Path, config: RunConfig, *, replace: bool = False) -> Path:
    """Create (or, with `replace`, empty) a run folder and write its config.yaml (rank 0 writes)."""
    state = process_state()
    if state.is_main_process:
        if replace:
            shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    state.wait_for_everyone()
    return run_dir


def run_seed(
    config: RunConfig, run_dir: Path, tasks: list[Task], shared: Shared, checkpoint: Checkpoint | None
) -> dict[str, Any]:
    """Every method of `config` on one seed's stream, in `run_dir`; returns that folder's results.json."""
    started = time.perf_counter()
    base_model, tokenizer = shared.base_model, shared.tokenizer
    accelerator = Accelerator(log_with=config.log_with or None, project_dir=run_dir, cpu=cpu_only())
    if config.log_with:
        accelerator.init_trackers("tracking", config=flat_settings(config.to_dict()))
    log = MetricsLog(run_dir / "metrics.jsonl", accelerator, resume_at=checkpoint and checkpoint.metrics_bytes)
    base_model.to(accelerator.device)
    if checkpoint is None:
        base = evaluate_run_stream(base_model, tokenizer, tasks, config, "untrained evaluate")
        log(
            {
                "event": "eval",
                "method": "untrained",
                "scores": base.scores,
                "errors": base.errors,
                "losses": base.losses,
            }
        )
        results = {
            "tasks": [t.name for t in tasks],
            "model": config.model.name,
            "seed": config.seed,
            "base": base.scores,
            "base_se": base.errors,
            "base_L": base.losses,
            "majority": [majority_answer_score(t, config.eval.split) for t in tasks],
            "methods": {},
        }
    else:
        results = checkpoint.results
    ctx = RunContext(run_dir, config, tasks, tokenizer, accelerator, log, results)
    if checkpoint is None:
        ctx.checkpoint(Position(0, 0, 0))
    for index, (name, entry) in enumerate(shared.entries.items()):
        if checkpoint is not None and index < checkpoint.position.method:
            continue
        here = None  # a checkpoint between methods holds no adapter: the method starts afresh
        if checkpoint is not None and index == checkpoint.position.method and checkpoint.adapter is not None:
            here = checkpoint
        try:
            result = train_method(index, entry, base_model, ctx, here)
        except TrainingError as err:
            latest = latest_folder(run_dir)
            raise TrainingError(f"{err}; the last good checkpoint is kept ({latest}; see --resume)") from None
        results["methods"][name] = summarise(result, results["base"])
        results["seconds"] = results.get("seconds", 0.0) + time.perf_counter() - started
        started = time.perf_counter()
        if accelerator.is_main_process:
            write_json(run_dir / "results.json", results)
        ctx.checkpoint(Position(index + 1, 0, 0))
    if accelerator.is_main_process:
        write_report(run_dir, results)
        clear_checkpoints(run_dir)
    accelerator.end_training()
    return results
