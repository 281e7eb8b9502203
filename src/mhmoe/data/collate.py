"""Turn examples into model batches.

Training: prompt and answer are tokenised separately and joined (the answer ends with EOS), labels are
-100 on the prompt and padding, as TRACE trains, so the loss covers the answer only. Tokenising the parts
separately makes training see exactly the token boundary that generation will continue from. A prompt too
long for `max_length` loses its start, never the answer.
Generation: prompts are left-padded so every row's next token comes at the same position.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mhmoe.data.trace import Example

IGNORE = -100


def encode(tokenizer, example: Example, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels of one training example."""
    prompt = tokenizer(example.prompt, add_special_tokens=True).input_ids
    answer = tokenizer(" " + example.answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    answer = answer[:max_length]
    prompt = prompt[max(0, len(prompt) + len(answer) - max_length) :]
    return prompt + answer, [IGNORE] * len(prompt) + answer


def training_batch(tokenizer, examples: Sequence[Example], max_length: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids, attention_mask and labels."""
    encoded = [encode(tokenizer, e, max_length) for e in examples]
    width = max(len(ids) for ids, _ in encoded)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (tokens, targets) in enumerate(encoded):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        labels[row, : len(targets)] = torch.tensor(targets)
        mask[row, : len(tokens)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def prompt_batch(tokenizer, prompts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    """Left-padded prompts for generation, keeping each prompt's last `max_length` tokens."""
    encoded = [tokenizer(p, add_special_tokens=True).input_ids[-max_length:] for p in prompts]
    width = max(len(ids) for ids in encoded)
    ids = torch.full((len(encoded), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, tokens in enumerate(encoded):
        ids[row, width - len(tokens) :] = torch.tensor(tokens)
        mask[row, width - len(tokens) :] = 1
    return {"input_ids": ids, "attention_mask": mask}
