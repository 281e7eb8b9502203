"""The training loss: mean next-token cross-entropy over the answer tokens, as TRACE trains.

Batches are left-padded (see data/collate.py), so every answer lies in the trailing columns. The LM head
(a 576 x 49,152 matmul on SmolLM2, about a fifth of the forward) then runs on those columns only, through
the model's own `logits_to_keep`, which also keeps each model's own logit post-processing (e.g. Gemma's
soft-capping). Models without `logits_to_keep` get full logits, sliced.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mhmoe.cl.eval_mode import evaluating
from mhmoe.data.collate import IGNORE, training_batch
from mhmoe.distributed import map_shared


def accepts_logits_to_keep(model: nn.Module) -> bool:
    forward = getattr(model, "module", model).forward  # a DDP/FSDP wrapper forwards to .module
    return "logits_to_keep" in inspect.signature(forward).parameters


def answer_columns(labels: torch.Tensor) -> int:
    """How many trailing columns the loss needs: every labelled position and the one before it."""
    labelled = (labels != IGNORE).any(dim=0)
    if not labelled.any():
        raise ValueError("answer_loss: the batch has no answer tokens (all labels are -100)")
    first = int(labelled.float().argmax())
    return labels.shape[1] - first + 1


def _answer_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of the trailing answer columns and the tokens each predicts (-100 where none)."""
    labels = batch["labels"]
    keep = min(answer_columns(labels), labels.shape[1])
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if accepts_logits_to_keep(model):
        logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits
    else:
        logits = model(**inputs, use_cache=False).logits[:, -keep:]
    # The logit at column t predicts the token at t + 1.
    targets = labels[:, labels.shape[1] - keep + 1 :]
    logits = logits[:, :-1]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # half-precision log-softmax over a large vocabulary loses the small terms
    return logits, targets


def answer_loss(model: nn.Module, batch: dict[str, torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over the answer tokens of one left-padded batch: their mean, or with "sum" their total."""
    logits, targets = _answer_logits(model, batch)
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE, reduction=reduction
    )


def answer_nll_per_example(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's summed answer-token negative log-likelihood (nats) and its answer-token count."""
    logits, targets = _answer_logits(model, batch)
    per_token = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
    return per_token.sum(dim=1), (targets != IGNORE).sum(dim=1)


@torch.no_grad()
def answer_nll_batches(
    model: nn.Module, tokenizer, examples: Sequence, *, batch_size: int, max_length: int, desc: str
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each batch's per-example summed answer NLL and answer-token counts (`answer_nll_per_example`), the
    examples teacher-forced `batch_size` at a time in eval mode; under several processes each scores its share
    of the batches and every process gets all of them, in order."""
    device = next(model.parameters()).device
    chunks = [examples[start : start + batch_size] for start in range(0, len(examples), batch_size)]

    def chunk_nll(_: int, chunk: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
        batch = {k: v.to(device) for k, v in training_batch(tokenizer, chunk, max_length).items()}
        return answer_nll_per_example(model, batch)

    with evaluating(model):
        return map_shared(chunk_nll, chunks, desc=desc, progress=False)
