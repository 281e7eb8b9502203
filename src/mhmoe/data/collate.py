"""Turn examples into model batches.

Training: prompt and answer are tokenised separately and joined (the answer ends with EOS), labels are
-100 on the prompt and padding, as TRACE trains, so the loss covers the answer only. Tokenising the parts
separately makes training see exactly the token boundary that generation will continue from. A prompt too
long for `max_length` loses its start, never the answer.
Both kinds of batch are left-padded, so every row ends at the last position: generation continues from the
same column in every row, and in training the answers sit in the trailing columns, where the loss can compute
the LM head over those columns only. Explicit position ids keep each row's positions those of the unpadded
text (models with absolute position embeddings need that; rotary ones are unaffected).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mhmoe.data.trace import DataError, Example, Task

IGNORE = -100


def check_answers_fit(tokenizer, tasks: Sequence[Task], max_length: int, where: str = "train.max_length") -> None:
    """Refuse, naming the task and record, a training answer that `max_length` would cut: the answer and its EOS
    need max_length - 1 positions (at least one prompt token precedes the first answer token, which is
    predicted from it), and a cut answer would train on part of itself without a word."""
    for task in tasks:
        for index, example in enumerate(task.split("train")):
            needed = len(tokenizer(" " + example.answer, add_special_tokens=False).input_ids) + 2
            if needed > max_length:
                raise DataError(
                    f"{where}={max_length}: task {task.name}, train record {index}: its answer needs {needed} "
                    "tokens (one prompt token, the answer, EOS); raise max_length or shorten the answer"
                )


def answer_ids(tokenizer, answer: str) -> list[int]:
    """An answer's tokens as training predicts them: after a space, ending with EOS."""
    return tokenizer(" " + answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]


def encode(tokenizer, example: Example, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels of one training example."""
    prompt = tokenizer(example.prompt, add_special_tokens=True).input_ids
    answer = answer_ids(tokenizer, example.answer)[:max_length]
    prompt = prompt[max(0, len(prompt) + len(answer) - max_length) :]
    return prompt + answer, [IGNORE] * len(prompt) + answer


def _pad(rows: Sequence[list[int]], value: int, *, left: bool = False) -> torch.Tensor:
    """Rows of token ids as one (len(rows), longest) tensor, padded with `value` on the right or left."""
    width = max(len(row) for row in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        out[i, span] = torch.tensor(row, dtype=torch.long)
    return out


def left_padded(tokenizer, ids: Sequence[list[int]]) -> dict[str, torch.Tensor]:
    """Rows of token ids as a left-padded batch: input_ids, attention_mask and position_ids."""
    mask = _pad([[1] * len(row) for row in ids], 0, left=True)
    return {
        "input_ids": _pad(ids, tokenizer.pad_token_id, left=True),
        "attention_mask": mask,
        "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
    }


def training_batch(tokenizer, examples: Sequence[Example], max_length: int) -> dict[str, torch.Tensor]:
    """Left-padded input_ids, attention_mask, position_ids and labels (-100 outside the answers)."""
    return joined_batch(tokenizer, [encode(tokenizer, e, max_length) for e in examples])


def joined_batch(tokenizer, rows: Sequence[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    """`training_batch` of rows already encoded as (token ids, labels)."""
    ids, labels = zip(*rows, strict=True)
    return {**left_padded(tokenizer, ids), "labels": _pad(labels, IGNORE, left=True)}


def prompt_batch(tokenizer, prompts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    """Left-padded prompts for generation, keeping each prompt's last `max_length` tokens."""
    ids = [tokenizer(p, add_special_tokens=True).input_ids[-max_length:] for p in prompts]
    return left_padded(tokenizer, ids)
