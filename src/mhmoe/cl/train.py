"""The one training loop: train the adapter on a task of the stream (or on a whole stream without task
boundaries); every method plugs in through hooks.

AdamW with the research's settings, a fresh optimizer and cosine schedule per task (each task is its own
fine-tuning run, as in TRACE), gradient accumulation and clipping, under Accelerate so the same loop runs
on one CPU or many GPUs. The batch order is a pure function of (seed, task index, epoch), so a step
index is enough to know where a task's data stands.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from mhmoe.cl.loss import answer_loss
from mhmoe.cl.methods import Hooks
from mhmoe.data.collate import IGNORE, training_batch
from mhmoe.data.trace import Example, Task
from mhmoe.errors import MhmoeError
from mhmoe.observe import collect_balance
from mhmoe.settings import TrainSettings


class TrainingError(MhmoeError):
    """Training cannot go on (e.g. the loss became NaN or infinite)."""


@dataclass
class TaskTraining:
    steps: int
    examples: int
    """Distinct training examples of a task; example visits for a plan without task boundaries."""
    tokens: int
    seconds: float
    final_loss: float


def steps_per_task(settings: TrainSettings, examples: int) -> int:
    """Optimizer steps for one task: `epochs` passes of `batch_size * grad_accum` examples, capped by max_steps."""
    steps = math.ceil(settings.epochs * examples / (settings.batch_size * settings.grad_accum))
    return min(steps, settings.max_steps) if settings.max_steps else steps


def batch_order(examples: int, steps: int, per_step: int, *, seed: int, task_index: int) -> list[list[int]]:
    """Example indices of every optimizer step: seeded shuffles, one per epoch, concatenated and cut."""
    order: list[int] = []
    epoch = 0
    while len(order) < steps * per_step:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + task_index * 1_009 + epoch)
        order += torch.randperm(examples, generator=generator).tolist()
        epoch += 1
    return [order[s * per_step : (s + 1) * per_step] for s in range(steps)]


def make_optimizer(model: nn.Module, settings: TrainSettings, steps: int):
    """AdamW over the trainable (adapter) parameters and a cosine schedule with optional warmup."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TrainingError("the model has no trainable parameters; attach an adapter first")
    optimizer = torch.optim.AdamW(
        params, lr=settings.lr, betas=tuple(settings.betas), eps=settings.eps, weight_decay=settings.weight_decay
    )
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(settings.warmup_ratio * steps), steps)
    return optimizer, scheduler


def _micro_batches(tokenizer, examples: list[Example], settings: TrainSettings) -> Iterator[dict]:
    for start in range(0, len(examples), settings.batch_size):
        yield training_batch(tokenizer, examples[start : start + settings.batch_size], settings.max_length)


def _answer_tokens(micro: list[dict], accelerator: Accelerator) -> int:
    """Answer tokens the loss covers in a whole optimizer step: this process's count, summed over processes."""
    local = sum(int((batch["labels"][:, 1:] != IGNORE).sum()) for batch in micro)
    return int(accelerator.reduce(torch.tensor(local, device=accelerator.device), "sum"))


def _accumulate(model, plain, micro: list[dict], hooks: Hooks, accelerator: Accelerator, *, answer_tokens: int):
    """Backward over this process's micro-batches; returns its (answer-loss, added-loss) parts of the step loss.

    The answer loss is summed and divided by the whole step's answer tokens, so accumulation and any split
    over processes give exactly the gradient of the step's token mean (times the process count, which
    DDP's averaging undoes). Penalties count once per step, whatever the split.
    """
    world = accelerator.num_processes
    data = extra = torch.zeros((), device=accelerator.device)
    for i, batch in enumerate(micro):
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        # Gradients are averaged across processes once per step, at the last micro-batch.
        with accelerator.no_sync(model) if i < len(micro) - 1 else nullcontext():
            # The block spans every forward of the micro-batch: replay's stored examples are balanced too.
            with collect_balance(model) as balance:
                nll = answer_loss(model, batch, reduction="sum") / answer_tokens
                penalty = hooks.penalty(plain)
            added = balance.loss()
            if penalty is not None:
                added = added + penalty
            accelerator.backward(nll * world + added / len(micro))
        data, extra = data + nll.detach(), extra + added.detach() / len(micro)
    return data, extra


def _optimizer_step(
    model: nn.Module, micro: list[dict], hooks: Hooks, accelerator: Accelerator, settings: TrainSettings, optim, where
) -> tuple[float, float | None, float]:
    """One optimizer step over this process's micro-batches; returns the step's loss, gradient norm and rate."""
    optimizer, scheduler = optim
    plain = accelerator.unwrap_model(model)  # hooks see parameter names without a DDP/FSDP prefix
    tokens = _answer_tokens(micro, accelerator)
    data, extra = _accumulate(model, plain, micro, hooks, accelerator, answer_tokens=tokens)
    loss_value = float(accelerator.reduce(data, "sum") + accelerator.reduce(extra, "mean"))
    if not math.isfinite(loss_value):
        label, step = where
        raise TrainingError(f"{label}: the loss became {loss_value} at step {step}; lower train.lr")
    hooks.after_backward(plain)
    grad_norm = None
    if settings.max_grad_norm is not None:
        grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm))
    lr = scheduler.get_last_lr()[0]  # the rate this step used; scheduler.step() moves to the next
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_value, grad_norm, lr


def train_task(
    model: nn.Module,
    tokenizer,
    task: Task,
    settings: TrainSettings,
    *,
    accelerator: Accelerator,
    hooks: Hooks,
    seed: int,
    task_index: int,
    log: Callable[[dict], None] = lambda record: None,
    progress: bool = True,
    label: str = "",
    resume: dict | None = None,
    on_step: Callable[[int, Any, Any], None] | None = None,
) -> TaskTraining:
    """Train the model's adapter on `task`'s training split; `log` receives one record per logged step.

    `resume` ({"step", "optimizer", "scheduler"} from a checkpoint) continues a task part-way: the batch
    order is a function of the step, so skipping the finished steps lands on the same batches.
    `on_step(step, optimizer, scheduler)` runs after every optimizer step (to checkpoint).
    """
    examples = task.split("train")
    steps = steps_per_task(settings, len(examples))
    hooks.before_task(accelerator.unwrap_model(model), task)  # first: it may change which parameters train (O-LoRA)
    order = batch_order(
        len(examples), steps, settings.batch_size * settings.grad_accum, seed=seed, task_index=task_index
    )
    plan = [[examples[i] for i in indices] for indices in order]
    trained = train_steps(
        model,
        tokenizer,
        plan,
        settings,
        accelerator=accelerator,
        hooks=hooks,
        log=lambda record: log({"task": task.name, **record}),
        progress=progress,
        label=label or task.name,
        resume=resume,
        on_step=on_step,
    )
    hooks.after_task(accelerator.unwrap_model(model), task)
    return dataclasses.replace(trained, examples=len(examples))  # the task's examples, not their visits


def train_steps(
    model: nn.Module,
    tokenizer,
    plan: list[list[Example]],
    settings: TrainSettings,
    *,
    accelerator: Accelerator,
    hooks: Hooks,
    log: Callable[[dict], None] = lambda record: None,
    progress: bool = True,
    label: str = "",
    resume: dict | None = None,
    on_step: Callable[[int, Any, Any], None] | None = None,
    after_step: Callable[[list[Example]], None] | None = None,
    optim: tuple | None = None,
) -> TaskTraining:
    """Train on `plan`, one optimizer step per entry (its examples), under one optimizer and cosine schedule
    (`optim`, an (optimizer, scheduler) pair shared with other plans, or a fresh pair for this plan).

    A task of the stream is one plan; a stream without boundaries is one plan for the whole stream.
    `after_step(examples)` sees each step's examples once the step is taken (a boundary-free method's memory).
    """
    steps = len(plan)
    optimizer, scheduler = optim or make_optimizer(model, settings, steps)
    first_step = 1
    if resume is not None:
        if "optimizer" in resume:
            optimizer.load_state_dict(resume["optimizer"])
            scheduler.load_state_dict(resume["scheduler"])
        first_step = resume["step"] + 1
    model.train()
    start, loss_value = time.perf_counter(), float("nan")
    rank, world = accelerator.process_index, accelerator.num_processes
    tokens = sum(  # the steps a resumed plan skips count as they did when they ran
        int(batch["attention_mask"].sum())
        for step_examples in plan[: first_step - 1]
        for batch in _micro_batches(tokenizer, step_examples[rank::world], settings)
    )
    shown = progress and accelerator.is_main_process
    bar = tqdm(plan[first_step - 1 :], desc=label, disable=not shown, leave=False, initial=first_step - 1, total=steps)
    for step, step_examples in enumerate(bar, start=first_step):
        step_start = time.perf_counter()
        micro = list(_micro_batches(tokenizer, step_examples[rank::world], settings))  # this process's share
        step_tokens = sum(int(batch["attention_mask"].sum()) for batch in micro)
        loss_value, grad_norm, lr = _optimizer_step(
            model, micro, hooks, accelerator, settings, (optimizer, scheduler), (label, step)
        )
        tokens += step_tokens
        if after_step is not None:
            after_step(step_examples)
        bar.set_postfix(loss=f"{loss_value:.3f}")
        if step % settings.log_every == 0 or step == steps:
            speed = step_tokens / (time.perf_counter() - step_start)
            log({"step": step, "loss": loss_value, "lr": lr, "grad_norm": grad_norm, "tokens_per_s": speed})
        if on_step is not None:
            on_step(step, optimizer, scheduler)
    model.eval()
    examples = sum(len(step_examples) for step_examples in plan)
    return TaskTraining(steps, examples, tokens, time.perf_counter() - start, loss_value)
