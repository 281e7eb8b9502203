"""Scoring a task whose answers come from a fixed set by the likelihood of each option instead of by generation
(`eval.scoring: options`, the multiple-choice protocol of evaluation harnesses).

Each option is scored as training scores an answer: the summed NLL of " option" and the end-of-sequence token
after the prompt, teacher-forced; the prediction is the option with the lowest (ties: the first listed). Every
option of an example follows the same prompt: a prompt too long for train.max_length loses its start, as in
training, but by the room the longest option needs, so no option sees less context than another. It
asks what the model prefers among the valid answers, so a model that has lost the answer format but kept the
mapping still scores; greedy generation (the default, TRACE's protocol) asks what it would say.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mhmoe.cl.eval_mode import evaluating
from mhmoe.cl.loss import answer_nll_per_example
from mhmoe.data.collate import IGNORE, answer_ids, joined_batch
from mhmoe.data.trace import Example, Task
from mhmoe.distributed import map_shared
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


def option_prompts(prompts: list[list[int]], option_ids: list[list[int]], max_length: int) -> list[list[int]]:
    """Each prompt's tokens, cut from the start to leave room for the longest option in `max_length`."""
    room = max(max_length - max(map(len, option_ids)), 1)
    return [prompt[-room:] for prompt in prompts]


def option_nll(model, tokenizer, examples: Sequence[Example], options: list[str], *, max_length: int) -> torch.Tensor:
    """Each example's summed NLL of each option, (examples, options), teacher-forced `len(examples)` pairs at a
    time (one process; the caller shares the batches)."""
    option_ids = [answer_ids(tokenizer, option) for option in options]
    rows = [
        (prompt + option, [IGNORE] * len(prompt) + option)
        for prompt in option_prompts([tokenizer(e.prompt).input_ids for e in examples], option_ids, max_length)
        for option in option_ids
    ]
    device, step, parts = next(model.parameters()).device, max(len(examples), 1), []
    with torch.no_grad(), evaluating(model):
        for start in range(0, len(rows), step):
            batch = joined_batch(tokenizer, rows[start : start + step])
            parts.append(answer_nll_per_example(model, {k: v.to(device) for k, v in batch.items()})[0])
    return torch.cat(parts).view(len(examples), len(options)).cpu()


def most_likely(options: list[str], nll: torch.Tensor) -> list[str]:
    """Each row's option of lowest NLL (argmin: ties go to the first listed)."""
    return [options[int(i)] for i in nll.argmin(dim=1)]


def option_choices(model, tokenizer, examples: Sequence[Example], options: list[str], *, batch_size: int,
                   max_length: int) -> list[str]:  # fmt: skip
    """Each example's most likely option, `batch_size` examples at a time, shared across processes."""
    chunks = [examples[start : start + batch_size] for start in range(0, len(examples), batch_size)]
    found = map_shared(
        lambda _, chunk: most_likely(options, option_nll(model, tokenizer, chunk, options, max_length=max_length)),
        chunks,
        desc="options",
        progress=False,
    )
    return [choice for chunk in found for choice in chunk]
