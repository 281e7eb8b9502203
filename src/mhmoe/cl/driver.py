"""The one training driver: an entry (a method or a variant) trained through its stream's segments.

A stream is a list of segments: one per task with task boundaries (the method's hooks hear where each task
starts and ends, and every task is scored after it, giving a row of R and L), or one for the whole stream
without them (the hooks see only each step's examples). Around the one loop of `mhmoe.cl.train`, what watches
the training is an observer: anytime scoring, checkpoints, adapter saving and the router-gradient record.
A resumed entry continues from its checkpoint's segment and step, on the same batches, with the same state.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn

from mhmoe.accounting import count_parameters
from mhmoe.adapters import AdapterConfig
from mhmoe.cl.anytime_record import add_row, empty_record, is_due, stream_plan
from mhmoe.cl.checkpoint import Checkpoint, Position, latest_folder, save_checkpoint
from mhmoe.cl.entries import Entry
from mhmoe.cl.evaluate import StreamRow, evaluate_stream
from mhmoe.cl.methods import METHODS, HookContext
from mhmoe.cl.router_facts import expert_load, router_gradients
from mhmoe.cl.run_folder import MetricsLog
from mhmoe.cl.train import batch_order, make_optimizer, steps_per_task, train_steps
from mhmoe.data.trace import Example, Task
from mhmoe.errors import CheckpointError
from mhmoe.inject import adapter_state, attach, save_adapter
from mhmoe.observe import moe_layers
from mhmoe.settings import RunConfig


@dataclass(frozen=True)
class Segment:
    """A stretch of the stream trained under one optimizer and schedule."""

    index: int
    task: Task | None
    """The task it trains, announced to the hooks; None on a stream without boundaries."""
    plan: list[list[Example]]
    """Each optimizer step's examples."""
    offset: int
    """Optimizer steps of the stream before it (where the anytime record places its steps)."""
    label: str
    folder: str
    """Its adapter's folder under adapters/<entry>/."""
    examples: int
    """Distinct training examples of its task; example visits without boundaries."""


def stream_segments(tasks: list[Task], config: RunConfig, name: str) -> list[Segment]:
    """The stream as segments: one per task with boundaries, one for the whole stream without them."""
    train = config.train
    if not config.stream.boundaries:
        plan = stream_plan(tasks, train, config.stream.blur, config.seed)
        label = f"{name} stream without boundaries (blur {config.stream.blur})"
        return [Segment(0, None, plan, 0, label, "stream", sum(len(step) for step in plan))]
    segments, offset = [], 0
    for index, task in enumerate(tasks):
        examples = task.split("train")
        steps = steps_per_task(train, len(examples))
        order = batch_order(
            len(examples), steps, train.batch_size * train.grad_accum, seed=config.seed, task_index=index
        )
        plan = [[examples[i] for i in indices] for indices in order]
        label = f"{name} {index + 1}/{len(tasks)} {task.name}"
        segments.append(Segment(index, task, plan, offset, label, f"{index + 1}-{task.name}", len(examples)))
        offset += steps
    return segments


@dataclass
class RunContext:
    """What every entry's training shares within one seed's run."""

    run_dir: Path
    config: RunConfig
    tasks: list[Task]
    tokenizer: Any
    accelerator: Accelerator
    log: MetricsLog
    results: dict[str, Any]
    """results.json as it stands (a RunResults mapping), saved in every checkpoint."""
    owner: dict[str, Any] = field(default_factory=dict)
    """The run its checkpoints belong to (see checkpoint_owner)."""

    def evaluate(self, model: nn.Module, label: str) -> StreamRow:
        """One row of R, its errors and one row of L, with the run's evaluation settings and seed."""
        config = self.config
        return evaluate_stream(
            model,
            self.tokenizer,
            self.tasks,
            config.eval,
            max_length=config.train.max_length,
            progress=config.progress,
            label=label,
            seed=config.seed,
        )

    def checkpoint(self, position: Position, progress: EntryProgress | None = None, optimizer=None, scheduler=None):
        """Save the run's state at `position` (rank 0 writes; every process waits for it)."""
        if self.accelerator.is_main_process:
            adapter = training = None
            rows, seconds = {}, {}
            if progress is not None:
                training = {"hooks": progress.hooks.state_dict(), "rng": torch.get_rng_state()}
                if torch.cuda.is_available():  # dropout on a GPU draws from its own generators
                    training["cuda_rng"] = torch.cuda.get_rng_state_all()
                if optimizer is None and progress.optim is not None:  # the stream's one optimizer, at any point
                    optimizer, scheduler = progress.optim
                if optimizer is not None:
                    training |= {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
                adapter = adapter_state(progress.plain)
                rows, seconds = dict(progress.rows), dict(progress.seconds)
            state = Checkpoint(position, self.results, rows, seconds, self.log.size(), adapter, training, self.owner)
            save_checkpoint(self.run_dir, state)
        self.accelerator.wait_for_everyone()


def fresh_adapter(base_model: nn.Module, adapter: AdapterConfig, seed: int) -> nn.Module:
    """A copy of the base model with a newly initialised adapter: the same for a seed whatever ran before."""
    torch.manual_seed(seed)
    return attach(copy.deepcopy(base_model), adapter)


def hooks_for(entry: Entry, config: RunConfig, tokenizer: Any, tasks: int):
    """The entry's method hooks, fresh for this run."""
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


@dataclass
class EntryProgress:
    """One entry's training state: its model (plain and as Accelerate prepared it), hooks, rows and times."""

    name: str
    plain: nn.Module
    model: nn.Module
    hooks: Any
    rows: dict[str, Any] = field(
        default_factory=lambda: {"R": [], "R_se": [], "L": [], "router_grad": {}, "anytime": empty_record()}
    )
    seconds: dict[str, float] = field(default_factory=lambda: {"train": 0.0, "eval": 0.0})
    optim: tuple | None = None
    """One (optimizer, scheduler) for the whole stream (stream.schedule 'stream'); None: one per segment."""

    def restore(self, checkpoint: Checkpoint) -> None:
        """Put the adapter, the hooks' state, the RNG, the rows and times back as the checkpoint holds them."""
        params = adapter_state(self.plain)
        saved = checkpoint.adapter or {}
        if set(saved) != set(params) or any(saved[n].shape != p.shape for n, p in params.items()):
            raise CheckpointError("checkpoint: its adapter tensors do not match this run's adapter (names or shapes)")
        training = checkpoint.training
        if not isinstance(training, dict) or not {"hooks", "rng"} <= set(training):
            raise CheckpointError("checkpoint: its training state lacks the hooks' state or the RNG")
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(saved[name])
        self.hooks.load_state_dict(training["hooks"])
        torch.set_rng_state(training["rng"])
        if "cuda_rng" in training and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(training["cuda_rng"])
        self.rows, self.seconds = copy.deepcopy(checkpoint.rows), dict(checkpoint.seconds)


class AnytimeScorer:
    """Scores every task mid-stream for the entry's anytime record, without touching training's randomness."""

    def __init__(self, ctx: RunContext, progress: EntryProgress) -> None:
        self.ctx, self.progress = ctx, progress

    def score(self, step: int) -> None:
        began = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            row = self.ctx.evaluate(self.progress.plain, f"{self.progress.name} step {step}")
        self.progress.plain.train()
        self.record(step, row)
        self.progress.seconds["eval"] += time.perf_counter() - began

    def record(self, step: int, row: StreamRow) -> None:
        add_row(self.progress.rows["anytime"], step, row)
        event = {"event": "anytime", "method": self.progress.name, "step": step}
        self.ctx.log(event | {"scores": row.scores, "errors": row.errors, "losses": row.losses})


class StepObserver:
    """What runs after each optimizer step inside a segment: anytime scoring and mid-segment checkpoints.

    A segment's last step is left to the segment's end, where the entry is saved, scored and checkpointed.
    """

    def __init__(self, ctx: RunContext, progress: EntryProgress, index: int, total: int) -> None:
        self.ctx, self.progress, self.index, self.total = ctx, progress, index, total
        self.anytime = AnytimeScorer(ctx, progress)

    def __call__(self, segment: Segment, step: int, optimizer, scheduler) -> None:
        if step == len(segment.plan):
            return
        if is_due(segment.offset + step, self.total, self.ctx.config.stream.eval_every):
            self.anytime.score(segment.offset + step)
        every = self.ctx.config.train.checkpoint_every
        if every and step % every == 0:
            self.ctx.checkpoint(Position(self.index, segment.index, step), self.progress, optimizer, scheduler)


def train_segment(
    segment: Segment, ctx: RunContext, progress: EntryProgress, observer: StepObserver, resume: Checkpoint | None
) -> dict[str, Any]:
    """Train one segment (from the resumed step, if any); returns its training statistics."""
    config, plain, hooks = ctx.config, progress.plain, progress.hooks
    partial = None
    if resume is not None and resume.position.task == segment.index and resume.position.step > 0:
        partial = {"step": resume.position.step}
        if progress.optim is None:  # the segment's own optimizer, as the checkpoint left it
            partial |= {k: resume.training[k] for k in ("optimizer", "scheduler")}
    task_name = {"task": segment.task.name} if segment.task is not None else {}
    if segment.task is not None:
        hooks.before_task(plain, segment.task)  # first: it may change which parameters train (O-LoRA)
    with router_gradients(plain, progress.rows["router_grad"]):
        trained = train_steps(
            progress.model,
            ctx.tokenizer,
            segment.plan,
            config.train,
            accelerator=ctx.accelerator,
            hooks=hooks,
            log=lambda record: ctx.log({"event": "train", "method": progress.name, **task_name, **record}),
            progress=config.progress,
            label=segment.label,
            resume=partial,
            on_step=lambda step, opt, sch: observer(segment, step, opt, sch),
            after_step=(lambda examples: hooks.after_step(plain, examples)) if segment.task is None else None,
            optim=progress.optim,
        )
    if segment.task is not None:
        hooks.after_task(plain, segment.task)
    progress.seconds["train"] += trained.seconds
    return vars(dataclasses.replace(trained, examples=segment.examples))


def score_task_end(
    segment: Segment, ctx: RunContext, progress: EntryProgress, observer: StepObserver, stats: dict
) -> None:
    """After a task: a row of R, its errors and a row of L (which also serves the anytime record when due)."""
    began = time.perf_counter()
    tasks = ctx.tasks
    row = ctx.evaluate(progress.plain, f"{progress.name} evaluate after {segment.index + 1}/{len(tasks)}")
    rows = progress.rows
    rows["R"].append(row.scores)
    rows["R_se"].append(row.errors)
    rows["L"].append(row.losses)
    rows.setdefault("identified", []).append(row.identified)
    progress.seconds["eval"] += time.perf_counter() - began
    event = {"event": "eval", "method": progress.name, "task": segment.task.name, "after_task": segment.index}
    ctx.log(event | {"scores": row.scores, "errors": row.errors, "losses": row.losses, **stats})
    end = segment.offset + len(segment.plan)
    if is_due(end, observer.total, ctx.config.stream.eval_every):
        observer.anytime.record(end, row)


TRAINED = "trained"
"""The rows key holding a segment's training statistics between its training and its scoring (checkpointed)."""


def train_entry(index: int, entry: Entry, base_model: nn.Module, ctx: RunContext, resume: Checkpoint | None) -> dict:
    """Train one entry through the stream (from `resume`'s position, if given) and return its result."""
    config = ctx.config
    model = fresh_adapter(base_model, entry.adapter, config.seed)
    counts = count_parameters(model)
    progress = EntryProgress(entry.name, model, model, hooks_for(entry, config, ctx.tokenizer, len(ctx.tasks)))
    start = Position(index, 0, 0)
    if resume is not None:
        progress.restore(resume)
        start = resume.position
    progress.model = ctx.accelerator.prepare(model)
    segments = stream_segments(ctx.tasks, config, entry.name)
    check_position(start, segments, ctx.run_dir)
    observer = StepObserver(ctx, progress, index, sum(len(s.plan) for s in segments))
    if config.stream.boundaries and config.stream.schedule == "stream":
        progress.optim = stream_optimizer(progress.model, config, observer.total, resume)
    for segment in segments[start.task :]:
        done = start.step if segment.index == start.task else 0
        stats = progress.rows.pop(TRAINED, {})  # a run resumed between training and scoring kept them
        if done < len(segment.plan):
            stats = train_segment(segment, ctx, progress, observer, resume if segment.index == start.task else None)
            progress.rows[TRAINED] = stats
            if ctx.accelerator.is_main_process:
                save_adapter(progress.plain, ctx.run_dir / "adapters" / entry.name / segment.folder)
            ctx.checkpoint(Position(index, segment.index, len(segment.plan)), progress)  # a kill while scoring
        progress.rows.pop(TRAINED, None)
        if segment.task is not None:
            score_task_end(segment, ctx, progress, observer, stats)
        elif is_due(observer.total, observer.total, config.stream.eval_every):
            observer.anytime.score(observer.total)
        ctx.checkpoint(Position(index, segment.index + 1, 0), progress)
    return entry_result(entry, counts, progress, ctx)


def check_position(position: Position, segments: list[Segment], run_dir: Path) -> None:
    """Refuse a checkpoint whose position lies outside this entry's stream (it could only come from elsewhere)."""
    inside = position.task < len(segments) and position.step <= len(segments[position.task].plan)
    if not inside and (position.task, position.step) != (len(segments), 0):
        raise CheckpointError(
            f"{latest_folder(run_dir)}/state.json: position task {position.task}, step {position.step} is outside "
            f"this run's stream ({len(segments)} segments)"
        )


def stream_optimizer(model: nn.Module, config: RunConfig, total: int, resume: Checkpoint | None) -> tuple:
    """One optimizer and one cosine schedule over all the stream's steps, restored from `resume` if it has them."""
    optimizer, scheduler = make_optimizer(model, config.train, total)
    training = resume.training if resume is not None else None
    if training and "optimizer" in training:
        optimizer.load_state_dict(training["optimizer"])
        scheduler.load_state_dict(training["scheduler"])
    return optimizer, scheduler


def entry_result(entry: Entry, counts, progress: EntryProgress, ctx: RunContext) -> dict[str, Any]:
    """What results.json keeps of one trained entry (before its metrics are added)."""
    config, rows = ctx.config, progress.rows
    result = {"method": entry.method, "match": entry.match, "boundaries": config.stream.boundaries}
    if not config.stream.boundaries:
        result["blur"] = config.stream.blur
    result |= {"adapter": entry.adapter.to_dict(), "parameters": dataclasses.asdict(counts)}
    if config.stream.boundaries:
        identified = rows.get("identified", [])
        result |= {
            "R": rows["R"],
            "R_se": rows["R_se"],
            "L": rows["L"],
            "identified": identified if any(v is not None for row in identified for v in row) else None,
        }
    if config.stream.eval_every or not config.stream.boundaries:
        result["anytime"] = rows["anytime"]
    result["router"] = router_facts(progress.plain, entry.adapter, ctx, rows["router_grad"])
    return result | {"train_seconds": progress.seconds["train"], "eval_seconds": progress.seconds["eval"]}


def router_facts(plain: nn.Module, adapter: AdapterConfig, ctx: RunContext, grads: dict) -> dict | None:
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
        "fixed_by_design": adapter.routers_fixed,
        "trained": {layer: grads.get(layer, 0.0) > 0 for layer in load},
        "max_grad": grads,
        "load": load,
    }
