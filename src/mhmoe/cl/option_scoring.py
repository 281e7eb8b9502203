"""Scoring a task whose answers come from a fixed set by the likelihood of each option instead of by generation
(`eval.scoring: options`, the multiple-choice protocol of evaluation harnesses).

Each option is scored as training scores an answer: the summed NLL of " option" and the end-of-sequence token
after the prompt, teacher-forced; the prediction is the option with the lowest (ties: the first listed). It
asks what the model prefers among the valid answers, so a model that has lost the answer format but kept the
mapping still scores; greedy generation (the default, TRACE's protocol) asks what it would say.
"""

from __future__ import annotations

from collections.abc import Sequence

from mhmoe.cl.loss import answer_nll_batches
from mhmoe.data.trace import Example, Task
from mhmoe.errors import ConfigError
from mhmoe.metrics.text import BINARY


def task_options(task: Task) -> list[str]:
    """The task's answer set: its declared labels (the CL Benchmark's), else every distinct answer of its
    splits, in first-seen order."""
    if task.options:
        return list(task.options)
    return list(dict.fromkeys(e.answer for split in task.splits.values() for e in split))


def check_option_scoring(tasks: Sequence[Task]) -> None:
    """Option scoring compares answers right or wrong (accuracy, exact match): refuse a task scored by text
    similarity, naming it."""
    for task in tasks:
        if task.scorer not in BINARY:
            raise ConfigError(
                f"eval.scoring 'options': task {task.name} is scored by {task.scorer}, not by exact answers; "
                "score it by generation (eval.scoring: generate)"
            )


def option_choices(model, tokenizer, examples: Sequence[Example], options: list[str], *, batch_size: int,
                   max_length: int) -> list[str]:  # fmt: skip
    """Each example's most likely option."""
    pairs = [Example(e.prompt, option) for e in examples for option in options]
    parts = answer_nll_batches(model, tokenizer, pairs, batch_size=batch_size, max_length=max_length, desc="options")
    nll = [value for batch_nll, _ in parts for value in batch_nll.tolist()]
    per_example = [nll[i * len(options) : (i + 1) * len(options)] for i in range(len(examples))]
    return [options[min(range(len(options)), key=row.__getitem__)] for row in per_example]
