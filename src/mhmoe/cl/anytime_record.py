"""Scoring a stream "any time": every task's test set every N optimizer steps, in either stream mode.

Each evaluation point adds a row to a method's anytime record (step, scores, errors, answer NLLs); the
record's metrics are `mhmoe.metrics.anytime`'s. Without task boundaries the stream is one plan of steps from
`mhmoe.data.schedule`; with them the same record is filled across the tasks' steps, so both modes are scored
at the same steps on the same test sets.
"""

from __future__ import annotations

from typing import Any

from mhmoe.cl.train import batch_order, steps_per_task
from mhmoe.data.schedule import mixture_schedule
from mhmoe.data.trace import Example, Task
from mhmoe.metrics.anytime import anytime_average, final_op, forgetting_from_peak, loss_forgetting_from_best
from mhmoe.settings import TrainSettings


def stream_plan(tasks: list[Task], settings: TrainSettings, blur: float, seed: int) -> list[list[Example]]:
    """The whole stream's optimizer steps without boundaries: each task's boundary-mode batches, mixed by `blur`."""
    per_step = settings.batch_size * settings.grad_accum
    orders = []
    for index, task in enumerate(tasks):
        examples = len(task.split("train"))
        steps = batch_order(examples, steps_per_task(settings, examples), per_step, seed=seed, task_index=index)
        orders.append([i for step in steps for i in step])
    schedule = mixture_schedule(orders, per_step, blur)
    return [[tasks[t].split("train")[i] for t, i in step] for step in schedule]


def is_due(step: int, total: int, every: int) -> bool:
    """An evaluation point: every `every` steps of the stream, and its last step."""
    return every > 0 and (step % every == 0 or step == total)


def empty_record() -> dict[str, list]:
    return {"steps": [], "A": [], "A_se": [], "AL": []}


def add_row(record: dict[str, list], step: int, row: Any) -> None:
    """Append one evaluation (a StreamRow: scores, errors, losses) taken after `step` optimizer steps."""
    record["steps"].append(step)
    record["A"].append(row.scores)
    record["A_se"].append(row.errors)
    record["AL"].append(row.losses)


def anytime_metrics(record: dict[str, list]) -> dict[str, Any]:
    """The record's metrics: anytime average, final OP, forgetting from each task's peak (score and loss)."""
    peaks = forgetting_from_peak(record["A"])
    losses = loss_forgetting_from_best(record["AL"])
    return {
        "anytime_avg": anytime_average(record["A"], record["steps"]),
        "final_op": final_op(record["A"]),
        "peak_forgetting": sum(peaks) / len(peaks),
        "peak_forgetting_per_task": peaks,
        "loss_peak_forgetting": sum(losses) / len(losses),
    }
