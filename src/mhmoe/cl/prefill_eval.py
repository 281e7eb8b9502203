"""One prefill per batch of prompts serves generation, the answer loss and option scores.

Evaluation ran two forwards over every prompt, generation's prefill and the loss's teacher-forced forward, and
together they were nearly all of its time (benchmarks/eval_speed.py). Here a batch's prompts, left-padded so
all end at the same column, run once, all but their last token, into a KV cache. Each answer to be scored (the
reference answer for the loss matrix, every option under option scoring) continues a copy of that cache from
the last prompt token, right-padded; generation continues the cache itself. The probabilities are those of one
forward over prompt and answer; only the float summation order differs from the two-pass path.

That holds only when both passes would see the same prompt: a batch with a prompt that `max_prompt_tokens`
cuts, or a prompt and answer longer than `max_length` (where training's encoding cuts the prompt), is scored the
two-pass way. So are models with task identity (prefix methods), whose teacher-forced forward chooses the task
from prompt and answer together.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mhmoe.adapters.task_identity import TASK_IDENTITY
from mhmoe.cl.option_scoring import most_likely
from mhmoe.data.collate import IGNORE, prompt_batch
from mhmoe.data.trace import Example


@dataclass
class BatchEval:
    """One batch's predictions and each example's summed reference-answer NLL and answer-token count."""

    predictions: list[str]
    nll: torch.Tensor
    counts: torch.Tensor


def shares_prefill(model: nn.Module) -> bool:
    """Whether the model's evaluation may share one prefill: not with task identity (see the module's note)."""
    return getattr(model, TASK_IDENTITY, None) is None


def cache_keyword(model: nn.Module) -> str:
    """The name a model's forward takes its KV cache by: 'cache' in current Transformers, 'past_key_values' before."""
    forward = getattr(model, "module", model).forward
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def answer_ids(tokenizer, answer: str) -> list[int]:
    """An answer's tokens as training encodes them: after a space, ending with EOS."""
    return tokenizer(" " + answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]


def _fits(prompt_lengths: list[int], continuations: list[list[int]], max_prompt: int, max_length: int) -> bool:
    """No prompt is cut by generation's limit and no prompt-and-answer by training's."""
    return all(
        1 < n <= max_prompt and n + len(c) <= max_length for n, c in zip(prompt_lengths, continuations, strict=True)
    )


def _continuation_nll(model, cache, prompt: dict, last: torch.Tensor, answers: list[list[int]], pad: int):
    """Each row's summed NLL of its answer, continuing a copy of the prompt cache from the last prompt token."""
    rows, width = len(answers), max(map(len, answers)) + 1
    ids = torch.full((rows, width), pad, dtype=torch.long)
    mask = torch.zeros((rows, width), dtype=torch.long)
    targets = torch.full((rows, width - 1), IGNORE, dtype=torch.long)
    ids[:, 0], mask[:, 0] = last, 1
    for i, answer in enumerate(answers):
        ids[i, 1 : 1 + len(answer)] = torch.tensor(answer)
        mask[i, 1 : 1 + len(answer)] = 1
        targets[i, : len(answer)] = torch.tensor(answer)
    device = prompt["input_ids"].device
    full_mask = torch.cat([prompt["attention_mask"][:, :-1], mask.to(device)], dim=1)
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)[:, -width:]
    logits = model(
        input_ids=ids.to(device),
        attention_mask=full_mask,
        position_ids=positions,
        use_cache=True,
        **{cache_keyword(model): copy.deepcopy(cache)},
    ).logits[:, :-1]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # as the training loss: half-precision log-softmax loses the small terms
    per_token = F.cross_entropy(logits.transpose(1, 2), targets.to(device), ignore_index=IGNORE, reduction="none")
    return per_token.sum(dim=1).cpu(), (targets != IGNORE).sum(dim=1)


@torch.no_grad()
def evaluate_batch(
    model: nn.Module,
    tokenizer,
    examples: Sequence[Example],
    *,
    max_new_tokens: int,
    max_prompt_tokens: int,
    max_length: int,
    options: list[str] | None = None,
) -> BatchEval | None:
    """Predictions (greedy generations, or with `options` each example's most likely option) and the reference
    answers' NLL from one prefill; None where that would not be exact (see the module's note)."""
    from transformers import DynamicCache

    gold = [answer_ids(tokenizer, e.answer) for e in examples]
    option_ids = [answer_ids(tokenizer, option) for option in options or []]
    lengths = [len(tokenizer(e.prompt, add_special_tokens=True).input_ids) for e in examples]
    longest = [max([g, *option_ids], key=len) for g in gold]
    if not _fits(lengths, longest, max_prompt_tokens, max_length):
        return None
    device = next(model.parameters()).device
    prompt = prompt_batch(tokenizer, [e.prompt for e in examples], max_prompt_tokens)
    prompt = {k: v.to(device) for k, v in prompt.items()}
    cache = DynamicCache(config=model.config)
    model(**{k: v[:, :-1] for k, v in prompt.items()}, use_cache=True, **{cache_keyword(model): cache})
    last, pad = prompt["input_ids"][:, -1].cpu(), tokenizer.pad_token_id
    nll, counts = _continuation_nll(model, cache, prompt, last, gold, pad)
    if options is not None:
        scores = torch.stack(
            [_continuation_nll(model, cache, prompt, last, [o] * len(examples), pad)[0] for o in option_ids], dim=1
        )
        predictions = most_likely(options, scores)
    else:
        tokens = model.generate(
            input_ids=prompt["input_ids"],
            attention_mask=prompt["attention_mask"],
            do_sample=False,
            max_new_tokens=max_new_tokens,
            use_cache=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **{cache_keyword(model): cache},
        )
        new = tokens[:, prompt["input_ids"].shape[1] :]
        predictions = [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return BatchEval(predictions, nll, counts)
