"""Score a model on a task: batched greedy generation with the KV cache, then the task's scorer; and its
teacher-forced answer loss, the continuous measure of what a model still knows that greedy decoding can hide.

Greedy decoding is deterministic, so a score depends only on the weights. Scores are on 0-100. Under
several processes each generates its share of the prompt batches and every process gathers all of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from mhmoe.adapters.task_identity import known_task
from mhmoe.cl.eval_mode import evaluating
from mhmoe.cl.loss import answer_nll_batches, answer_nll_per_example
from mhmoe.cl.option_scoring import most_likely, option_choices, option_nll, task_options
from mhmoe.cl.prefill_eval import BatchEval, evaluate_batch, greedy_continuations, shares_prefill
from mhmoe.data.collate import prompt_batch, training_batch
from mhmoe.data.trace import Example, Task
from mhmoe.distributed import map_shared
from mhmoe.metrics.text import example_scores, mean_score
from mhmoe.metrics.uncertainty import score_error
from mhmoe.settings import EvalSettings


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    max_prompt_tokens: int = 512,
    progress: bool = False,
) -> list[str]:
    """Greedy continuations of `prompts` (new text only, special tokens dropped, stripped)."""
    device = next(model.parameters()).device
    outputs = []
    starts = range(0, len(prompts), batch_size)
    with evaluating(model):
        for start in tqdm(starts, desc="generate", disable=not progress, leave=False):
            batch = prompt_batch(tokenizer, prompts[start : start + batch_size], max_prompt_tokens)
            batch = {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}
            outputs += greedy_continuations(model, tokenizer, batch, max_new_tokens)
    return outputs


@dataclass
class TaskScore:
    score: float
    """The task's score (0-100): the mean of its examples' scores."""
    error: float
    """Its standard error over the examples (binomial for 0/100 scorers, else bootstrap)."""
    predictions: list[str]


def score_task(
    model,
    tokenizer,
    task: Task,
    split: str = "test",
    *,
    batch_size: int = 16,
    max_prompt_tokens: int = 512,
    max_new_tokens: int | None = None,
    seed: int = 0,
    options: list[str] | None = None,
    max_length: int = 256,
) -> TaskScore:
    """The task's score on `split`, its standard error (bootstrap seeded by `seed`) and the predictions.

    `max_new_tokens` caps the task's own generation length, if given. With `options`, each example's prediction
    is its most likely option (option_scoring.py; answers cut at `max_length` tokens, as in training) instead of
    its greedy generation.

    Prompts go in batches of `batch_size`; under several processes each generates its share of the batches.
    """
    examples = task.split(split)
    prompts = [e.prompt for e in examples]
    if options is not None:
        predictions = option_choices(model, tokenizer, examples, options, batch_size=batch_size, max_length=max_length)
    else:
        chunks = [prompts[start : start + batch_size] for start in range(0, len(prompts), batch_size)]
        generated = map_shared(
            lambda _, chunk: generate(
                model,
                tokenizer,
                chunk,
                max_new_tokens=min(task.max_new_tokens, max_new_tokens or task.max_new_tokens),
                batch_size=batch_size,
                max_prompt_tokens=max_prompt_tokens,
            ),
            chunks,
            desc="generate",
            progress=False,
        )
        predictions = [text for chunk in generated for text in chunk]
    return _task_score(task, examples, predictions, seed)


def _task_score(task: Task, examples: list[Example], predictions: list[str], seed: int) -> TaskScore:
    """The predictions' mean score on the task's scorer, with its standard error (bootstrap seeded by `seed`)."""
    per_example = example_scores(task.scorer, predictions, [e.answer for e in examples], [e.prompt for e in examples])
    score = sum(per_example) / max(len(per_example), 1)
    return TaskScore(score, score_error(task.scorer, per_example, seed=seed), predictions)


def majority_answer_score(task: Task, split: str = "test") -> float:
    """The score of always giving the split's most common answer, with the task's own scorer.

    An untrained model often scores 0 because it ignores the answer format; a task learned only to that format
    can then look learned at chance. This is the floor a learned task has to clear (ties: the first answer).
    """
    examples = task.split(split)
    if not examples:
        return 0.0
    answers = [e.answer for e in examples]
    constant = Counter(answers).most_common(1)[0][0]
    return mean_score(task.scorer, [constant] * len(answers), answers, [e.prompt for e in examples])


@torch.no_grad()
def task_loss(model, tokenizer, task: Task, split: str = "test", *, batch_size: int = 16, max_length: int = 256):
    """Task's mean answer-token negative log-likelihood (nats per token), teacher-forced as in training.

    The answers (with their end-of-sequence token) are scored after their prompts, one forward per batch;
    the mean is over every answer token of the split, as the training loss weighs them.
    """
    parts = answer_nll_batches(
        model, tokenizer, task.split(split), batch_size=batch_size, max_length=max_length, desc="loss"
    )
    return sum(float(nll.sum()) for nll, _ in parts) / max(sum(int(count.sum()) for _, count in parts), 1)


@dataclass
class StreamRow:
    """One row of R with its errors, and the same row of the loss matrix L."""

    scores: list[float]
    errors: list[float]
    losses: list[float]
    identified: list[float | None] = field(default_factory=list)
    """Per task, the percent of its test prompts whose task the model inferred right (prefix methods in 'infer'
    mode, tasks with a stored prototype); None where no task was inferred."""


def evaluate_stream(
    model,
    tokenizer,
    tasks: Sequence[Task],
    settings: EvalSettings,
    *,
    max_length: int,
    progress: bool,
    label: str = "evaluate",
    seed: int = 0,
) -> StreamRow:
    """Every task's score, its standard error and its answer loss (one progress bar over the tasks).

    Each task is scored as a known task (its index in `tasks`): prefix methods in 'oracle' mode use it, and
    'infer' mode's identification of the generation prompts is tallied against it.
    """
    row = StreamRow([], [], [])
    for j, task in enumerate(tqdm(tasks, desc=label, disable=not progress, leave=False)):
        options = task_options(task) if settings.scoring == "options" else None
        if settings.shared_prefill and shares_prefill(model):
            found, loss = evaluate_task(model, tokenizer, task, settings, max_length=max_length, seed=seed,
                                        options=options)  # fmt: skip
            row.identified.append(None)
        else:
            found, loss, identified = _two_pass_task(model, tokenizer, j, task, settings, max_length, seed, options)
            row.identified.append(identified)
        row.scores.append(found.score)
        row.errors.append(found.error)
        row.losses.append(loss)
    return row


def _two_pass_task(model, tokenizer, j: int, task: Task, settings: EvalSettings, max_length: int, seed: int,
                   options: list[str] | None) -> tuple[TaskScore, float, float | None]:  # fmt: skip
    """Task `j` scored, then its answer loss, each in its own pass; with the share of its prompts whose task
    was inferred right (task identity)."""
    with known_task(model, j, record=True) as tally:
        found = score_task(
            model,
            tokenizer,
            task,
            split=settings.split,
            batch_size=settings.batch_size,
            max_prompt_tokens=settings.max_prompt_tokens,
            max_new_tokens=settings.max_new_tokens,
            seed=seed,
            options=options,
            max_length=max_length,
        )
    with known_task(model, j):
        loss = task_loss(model, tokenizer, task, settings.split, batch_size=settings.batch_size, max_length=max_length)
    return found, loss, tally.accuracy


def evaluate_task(model, tokenizer, task: Task, settings: EvalSettings, *, max_length: int, seed: int = 0,
                  options: list[str] | None = None) -> tuple[TaskScore, float]:  # fmt: skip
    """The task's score and its answer loss, each batch from one prefill where that is exact
    (cl/prefill_eval.py), otherwise from the two passes; prompts go in batches of similar length, so a batch
    pads little, and results come back in the split's order. Under several processes each takes its share."""
    examples = task.split(settings.split)
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i].prompt))
    size = settings.batch_size
    chunks = [[examples[i] for i in order[start : start + size]] for start in range(0, len(order), size)]
    new_tokens = min(task.max_new_tokens, settings.max_new_tokens or task.max_new_tokens)

    def chunk_eval(_: int, chunk: list[Example]) -> BatchEval:
        limits = {"max_prompt_tokens": settings.max_prompt_tokens, "max_length": max_length}
        with evaluating(model):
            found = evaluate_batch(model, tokenizer, chunk, max_new_tokens=new_tokens, options=options, **limits)
            return found or _two_pass_batch(model, tokenizer, chunk, new_tokens, options, **limits)

    parts = map_shared(chunk_eval, chunks, desc="evaluate", progress=False)
    predictions = [""] * len(examples)
    for i, prediction in zip(order, (p for part in parts for p in part.predictions), strict=True):
        predictions[i] = prediction
    nll = sum(float(part.nll.sum()) for part in parts)
    loss = nll / max(sum(int(part.counts.sum()) for part in parts), 1)
    return _task_score(task, examples, predictions, seed), loss


@torch.no_grad()
def _two_pass_batch(model, tokenizer, chunk: list[Example], new_tokens: int, options: list[str] | None, *,
                    max_prompt_tokens: int, max_length: int) -> BatchEval:  # fmt: skip
    """One batch's predictions and reference-answer NLL, generation (or option scoring) and the loss apart."""
    if options is not None:
        predictions = most_likely(options, option_nll(model, tokenizer, chunk, options, max_length=max_length))
    else:
        predictions = generate(model, tokenizer, [e.prompt for e in chunk], max_new_tokens=new_tokens,
                               batch_size=len(chunk), max_prompt_tokens=max_prompt_tokens)  # fmt: skip
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in training_batch(tokenizer, chunk, max_length).items()}
    nll, counts = answer_nll_per_example(model, batch)
    return BatchEval(predictions, nll.cpu(), counts.cpu())
