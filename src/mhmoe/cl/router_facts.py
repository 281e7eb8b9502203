"""Facts about a run's routers that decide how its MoE numbers can be read: did the routers train at all, and
how evenly do their heads spread tokens over the experts.

With top-1 routing and gate="selected" (the research's definition) the chosen expert's weight is always 1,
so the task loss gives the router exactly zero gradient; without a balance loss the routing then stays as
initialised for the whole run. That is a property of the configuration, stated wherever it runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from mhmoe.cl.eval_mode import evaluating
from mhmoe.cl.loss import accepts_logits_to_keep
from mhmoe.data.collate import training_batch
from mhmoe.data.trace import Task
from mhmoe.observe import moe_layers, record_routes

ROUTERS_FIXED_NOTE = (
    "top-1 routing with gate 'selected' and balance_coef 0 gives every chosen expert the weight 1, so the "
    "routers receive no gradient and keep their random initial routing for the whole run"
)


@contextmanager
def router_gradients(model: nn.Module, seen: dict[str, float]) -> Iterator[dict[str, float]]:
    """Record in `seen` the largest absolute router gradient of every MoE layer over the backward passes inside.

    `seen` carries values over from earlier blocks (a resumed run passes the checkpoint's), so the fact covers
    the whole run. Gradient hooks on the router parameters read each gradient as autograd produces it.
    """
    handles = []
    for name, layer in moe_layers(model).items():
        seen.setdefault(name, 0.0)

        def keep_largest(grad: torch.Tensor, name: str = name) -> None:
            seen[name] = max(seen[name], float(grad.detach().abs().max()))

        handles.append(layer.adapter_router.register_hook(keep_largest))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def _load(chosen: torch.Tensor, experts: int) -> dict[str, list]:
    """Per head: each expert's share of the chosen slots, and that distribution's entropy over log K."""
    heads = chosen.shape[1]
    counts = torch.zeros(heads, experts).scatter_add_(
        1, chosen.transpose(0, 1).reshape(heads, -1), torch.ones(heads, chosen[:, 0].numel())
    )
    share = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    plogp = torch.where(share > 0, share * share.log(), torch.zeros_like(share))
    entropy = -plogp.sum(dim=1) / math.log(experts)
    return {"share": share.tolist(), "entropy": entropy.tolist()}


@torch.no_grad()
def expert_load(
    model: nn.Module, tokenizer: Any, tasks: Sequence[Task], split: str, *, batch_size: int, max_length: int
) -> dict[str, dict[str, list]]:
    """Per MoE layer and head, the expert shares over every real (unpadded) token of the tasks' `split`."""
    device = next(model.parameters()).device
    chosen: dict[str, list[torch.Tensor]] = {}
    with evaluating(model):
        for task in tasks:
            examples = task.split(split)
            for start in range(0, len(examples), batch_size):
                batch = training_batch(tokenizer, examples[start : start + batch_size], max_length)
                real = batch["attention_mask"].bool().reshape(-1)
                inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "position_ids")}
                extra = {"logits_to_keep": 1} if accepts_logits_to_keep(model) else {}
                with record_routes(model, probs=False) as routes:
                    model(**inputs, use_cache=False, **extra)
                for name, log in routes.items():
                    chosen.setdefault(name, []).append(log.tokens()[0][real])
    layers = moe_layers(model)
    return {name: _load(torch.cat(parts), layers[name].experts) for name, parts in chosen.items()}
