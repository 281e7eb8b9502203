"""The analysed tokens and their features: task (its index in the stream), label, frequency and position buckets.

The label is the data's `label` field; where a task has none and is scored by accuracy (C-STANCE, FOMC,
NumGLUE) or by the answer's first character (ScienceQA), the answer (its first character) is the label, if
the task's analysed examples hold at most MAX_ANSWER_LABELS distinct ones (so NumGLUE's numeric answers,
one value per question, do not become a label).

Every token with a next token counts (prompt and answer, padding excluded), in the row-major order of the
left-padded batches the recorders run, so index t means the same token everywhere. A composition is the
tuple of a token's four feature values. `answer` marks the tokens whose next token is an answer token: their
losses are the ones the loss matrix L averages.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from mhmoe.data.collate import IGNORE, training_batch
from mhmoe.data.trace import Example, Task

FEATURES = ("task", "label", "frequency", "position")
MAX_ANSWER_LABELS = 8
ANSWER_SCORERS = {"accuracy": lambda answer: answer.strip(), "first_char": lambda answer: answer.strip()[:1]}
Batch = dict[str, torch.Tensor]
"""One left-padded batch of analysed examples: input_ids, attention_mask, position_ids, labels, task."""
NO_LABEL = "-"


@dataclass(frozen=True)
class TokenTable:
    values: dict[str, np.ndarray]
    """Per feature, each token's value index."""
    names: dict[str, list[str]]
    """Per feature, the name of each value index."""
    example: np.ndarray
    """Each token's example: its index in the analysed examples (the independent unit)."""
    answer: np.ndarray
    """Whether each token's next token is an answer token: its loss is one the loss matrix L averages."""

    def __len__(self) -> int:
        return len(self.values["task"])

    def compositions(self, features: tuple[str, ...] = FEATURES) -> np.ndarray:
        """Each token's composition as an integer id (the tuple of its feature values)."""
        rows = np.stack([self.values[f] for f in features], axis=1)
        return np.unique(rows, axis=0, return_inverse=True)[1].reshape(-1)


def analysis_examples(tasks: list[Task], per_task: int, seed: int, split: str = "train") -> list[tuple[int, Example]]:
    """A seeded sample of each task's examples of `split`, as (task index, example), task after task."""
    chosen = []
    for index, task in enumerate(tasks):
        examples = list(task.split(split))
        random.Random(f"{seed}:analysis:{split}:{task.name}").shuffle(examples)
        chosen += [(index, e) for e in examples[:per_task]]
    return chosen


def example_labels(examples: list[tuple[int, Example]], scorers: list[str] | None = None) -> list[str]:
    """Each example's label: its `label` field, else the answer for an accuracy-scored task with few answers."""
    answers: dict[int, set[str]] = {}
    for task, e in examples:
        if scorers and scorers[task] in ANSWER_SCORERS:
            answers.setdefault(task, set()).add(ANSWER_SCORERS[scorers[task]](e.answer))
    labels = []
    for task, e in examples:
        if "label" in e.features:
            labels.append(e.features["label"])
        elif task in answers and len(answers[task]) <= MAX_ANSWER_LABELS:
            labels.append(ANSWER_SCORERS[scorers[task]](e.answer))
        else:
            labels.append(NO_LABEL)
    return labels


def analysis_batches(
    tokenizer: PreTrainedTokenizerBase, examples: list[tuple[int, Example]], batch_size: int, max_length: int
) -> list[Batch]:
    """Left-padded batches of the examples, each with the task index of its rows."""
    batches = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        batch = training_batch(tokenizer, [e for _, e in chunk], max_length)
        batch["task"] = torch.tensor([t for t, _ in chunk])
        batches.append(batch)
    return batches


def token_mask(batch: Batch) -> torch.Tensor:
    """(B, L) True at the analysed tokens: real tokens that have a next token."""
    mask = batch["attention_mask"].bool().clone()
    mask[:, -1] = False  # left padding: the last column is every row's final token
    return mask


def batch_spans(batches: list[Batch]) -> tuple[np.ndarray, np.ndarray]:
    """(start, count) of each batch's analysed tokens among all analysed tokens."""
    counts = np.array([int(token_mask(b).sum()) for b in batches], dtype=np.int64)
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64), counts


def _buckets(values: np.ndarray, count: int) -> np.ndarray:
    edges = np.quantile(values, np.arange(1, count) / count)
    return np.searchsorted(edges, values, side="right")


def token_table(
    batches: list[Batch],
    examples: list[tuple[int, Example]],
    task_names: list[str],
    *,
    frequency_buckets: int,
    position_buckets: int,
    scorers: list[str] | None = None,
) -> TokenTable:
    """The features of every analysed token of `batches` (made from `examples` by analysis_batches); `scorers`
    (per task) lets accuracy-scored tasks without a label field take their answer as the label."""
    labels = example_labels(examples, scorers)
    label_names = sorted(set(labels))
    task, label, ids, position, example, answer = [], [], [], [], [], []
    row = 0
    for batch in batches:
        mask = token_mask(batch)
        lengths = mask.sum(dim=1)
        predicts_answer = torch.zeros_like(mask)
        predicts_answer[:, :-1] = batch["labels"][:, 1:] != IGNORE
        for b in range(mask.shape[0]):
            n = int(lengths[b])
            answer += predicts_answer[b][mask[b]].tolist()
            task += [int(batch["task"][b])] * n
            label += [label_names.index(labels[row])] * n
            ids += batch["input_ids"][b][mask[b]].tolist()
            position += (np.minimum(np.arange(n) * position_buckets // max(n, 1), position_buckets - 1)).tolist()
            example += [row] * n
            row += 1
    ids = np.array(ids)
    counts = np.bincount(ids)[ids]  # how often each token's id occurs among the analysed tokens
    return TokenTable(
        values={
            "task": np.array(task),
            "label": np.array(label),
            "frequency": _buckets(counts, frequency_buckets),
            "position": np.array(position),
        },
        names={
            "task": list(task_names),
            "label": label_names,
            "frequency": [f"q{i + 1}" for i in range(frequency_buckets)],
            "position": [f"{i}/{position_buckets}" for i in range(position_buckets)],
        },
        example=np.array(example),
        answer=np.array(answer, dtype=bool),
    )
