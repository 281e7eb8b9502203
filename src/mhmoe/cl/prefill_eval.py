"""One prefill per batch of prompts serves generation, the answer loss and option scores.

Evaluation ran two forwards over every prompt, generation's prefill and the loss's teacher-forced forward, and
together they were nearly all of its time (benchmarks/eval_speed.py). Here a batch's prompts, left-padded so
all end at the same column, run once, all but their last token, into a KV cache. Each answer to be scored (the
reference answer for the loss matrix, every option under option scoring) continues a copy of that cache from
the last prompt token, right-padded; generation continues the cache itself. The probabilities are those of one
forward over prompt and answer; only the float summation order differs from the two-pass path.

That holds only when both passes would see the same prompt. Under generation, a batch with a prompt that
`max_prompt_tokens` cuts, or a prompt and answer longer than `max_length` (where training's encoding cuts the
prompt), is scored the two-pass way. Option scoring cuts every option's prompt alike (option_scoring.py), so its
options always share the prefill; where that cut shortened a prompt, the loss matrix's answer gets its own
forward. Models with task identity (prefix methods) keep the two passes: their teacher-forced forward chooses
the task from prompt and answer together.
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
from mhmoe.cl.loss import answer_nll_per_example
from mhmoe.cl.option_scoring import most_likely, option_prompts
from mhmoe.data.collate import IGNORE, answer_ids, left_padded, training_batch
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


def _prompts(tokenizer, examples, gold, options, max_prompt_tokens: int, max_length: int):
    """The prompt tokens one prefill runs (None where that is not exact), and whether the reference answers can
    continue them as the loss matrix encodes them (prompt and answer within `max_length`, the prompt whole)."""
    whole = [tokenizer(e.prompt, add_special_tokens=True).input_ids for e in examples]
    gold_fits = all(len(p) + len(g) <= max_length for p, g in zip(whole, gold, strict=True))
    if options is None:  # generation: its prompt cut (max_prompt_tokens) must be the loss's (none)
        exact = gold_fits and all(len(p) <= max_prompt_tokens for p in whole)
        return (whole if exact else None), exact
    cut = option_prompts(whole, options, max_length)
    return cut, gold_fits and all(len(c) == len(p) for c, p in zip(cut, whole, strict=True))


SHARED_HEAD_MIN = 8
"""The fewest leading tokens common to a batch's prompts worth computing once for the whole batch."""


def _shared_head(model: nn.Module, prompts: list[list[int]]) -> int:
    """How many leading tokens every prompt of the batch shares (a benchmark's task header, instruction and
    options), leaving each at least two of its own; 0 when too few to pay, or under sliding-window attention,
    where the gap the shared layout leaves between head and body would change which columns a window holds."""
    config = model.config.get_text_config()
    types = getattr(config, "layer_types", None) or []
    if any("sliding" in t for t in types) or getattr(config, "sliding_window", None) is not None:
        return 0
    limit, head = min(map(len, prompts)) - 2, 0
    while head < limit and all(p[head] == prompts[0][head] for p in prompts):
        head += 1
    return head if head >= SHARED_HEAD_MIN else 0


def _prefill(model: nn.Module, tokenizer, prompts: list[list[int]], device) -> tuple[dict, object]:
    """The batch's prompt layout and a KV cache of all but its last column.

    Left-padded prompts, except that a head all prompts share is computed once (batch 1), repeated to the batch
    and placed first: head, padding, then each prompt's own tokens ending at the last column. The attention mask
    hides the gap and the position ids run on across it, so every token sees what it sees left-padded.
    """
    from transformers import DynamicCache

    cache, head, rows = DynamicCache(config=model.config), _shared_head(model, prompts), len(prompts)
    body = left_padded(tokenizer, [p[head:] for p in prompts])
    ids = torch.cat([torch.tensor(prompts[0][:head], dtype=torch.long).repeat(rows, 1), body["input_ids"]], dim=1)
    mask = torch.cat([torch.ones(rows, head, dtype=torch.long), body["attention_mask"]], dim=1)
    prompt = {"input_ids": ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}
    prompt = {k: v.to(device) for k, v in prompt.items()}
    step = {"use_cache": True, cache_keyword(model): cache}
    if head:
        model(**{k: v[:1, :head] for k, v in prompt.items()}, **step)
        cache.batch_repeat_interleave(len(prompts))
    body_columns = {k: v[:, head:-1] for k, v in prompt.items() if k != "attention_mask"}
    model(**body_columns, attention_mask=prompt["attention_mask"][:, :-1], **step)  # the mask spans the cache too
    return prompt, cache


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
    gold = [answer_ids(tokenizer, e.answer) for e in examples]
    option_ids = [answer_ids(tokenizer, option) for option in options] if options is not None else None
    prompts, gold_continues = _prompts(tokenizer, examples, gold, option_ids, max_prompt_tokens, max_length)
    if prompts is None or min(map(len, prompts)) < 2:
        return None
    device, pad = next(model.parameters()).device, tokenizer.pad_token_id
    prompt, cache = _prefill(model, tokenizer, prompts, device)
    last = prompt["input_ids"][:, -1].cpu()
    if gold_continues:
        nll, counts = _continuation_nll(model, cache, prompt, last, gold, pad)
    else:  # an option cut the prompt: the loss matrix's answer is scored as training encodes it
        batch = {k: v.to(device) for k, v in training_batch(tokenizer, examples, max_length).items()}
        nll, counts = (t.cpu() for t in answer_nll_per_example(model, batch))
    if option_ids is not None:
        scores = [_continuation_nll(model, cache, prompt, last, [o] * len(examples), pad)[0] for o in option_ids]
        return BatchEval(most_likely(options, torch.stack(scores, dim=1)), nll, counts)
    inputs = {k: prompt[k] for k in ("input_ids", "attention_mask")} | {cache_keyword(model): cache}
    return BatchEval(greedy_continuations(model, tokenizer, inputs, max_new_tokens), nll, counts)


def greedy_continuations(model: nn.Module, tokenizer, inputs: dict, max_new_tokens: int) -> list[str]:
    """Greedy generation from left-padded `inputs` (ids, mask, optionally a filled cache): each row's new text,
    special tokens dropped, stripped. generate() derives position ids from the attention mask, step by step."""
    tokens = model.generate(
        **inputs,
        do_sample=False,
        max_new_tokens=max_new_tokens,
        use_cache=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    new = tokens[:, inputs["input_ids"].shape[1] :]
    return [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
