"""Score a model on a task: batched greedy generation with the KV cache, then the task's scorer.

Greedy decoding is deterministic, so a score depends only on the weights. Scores are on 0-100. Under
several processes each generates its share of the prompt batches and every process gathers all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from mhmoe.config import EvalSettings
from mhmoe.data.collate import prompt_batch
from mhmoe.data.trace import Task
from mhmoe.distributed import map_shared
from mhmoe.metrics.text import mean_score


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
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="generate", disable=not progress, leave=False):
        batch = prompt_batch(tokenizer, prompts[start : start + batch_size], max_prompt_tokens)
        # generate() derives position ids from the attention mask itself, step by step.
        batch = {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}
        tokens = model.generate(
            **batch,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            use_cache=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        new = tokens[:, batch["input_ids"].shape[1] :]
        outputs += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    model.train(was_training)
    return outputs


def score_task(
    model, tokenizer, task: Task, split: str = "test", *, batch_size: int = 16, max_prompt_tokens: int = 512
) -> tuple[float, list[str]]:
    """The task's score on `split` and the generations it was computed from.

    Prompts go in batches of `batch_size`; under several processes each generates its share of the batches.
    """
    examples = task.split(split)
    prompts = [e.prompt for e in examples]
    chunks = [prompts[start : start + batch_size] for start in range(0, len(prompts), batch_size)]
    generated = map_shared(
        lambda _, chunk: generate(
            model,
            tokenizer,
            chunk,
            max_new_tokens=task.max_new_tokens,
            batch_size=batch_size,
            max_prompt_tokens=max_prompt_tokens,
        ),
        chunks,
        desc="generate",
        progress=False,
    )
    predictions = [text for chunk in generated for text in chunk]
    answers, sources = [e.answer for e in examples], [e.prompt for e in examples]
    return mean_score(task.scorer, predictions, answers, sources), predictions


def score_stream(
    model, tokenizer, tasks: Sequence[Task], settings: EvalSettings, *, progress: bool, label: str = "evaluate"
) -> list[float]:
    """One row of R: the model's score on every task (one progress bar over the tasks)."""
    scores = []
    for task in tqdm(tasks, desc=label, disable=not progress, leave=False):
        score, _ = score_task(
            model,
            tokenizer,
            task,
            split=settings.split,
            batch_size=settings.batch_size,
            max_prompt_tokens=settings.max_prompt_tokens,
        )
        scores.append(score)
    return scores
