"""Model passes over the analysed tokens, batch by batch: router inputs, routes, per-token losses and
per-token output gradients. Only what a caller keeps is stored, so long corpora stream in bounded memory.
Under several processes each takes its share of the batches and all of them gather the results.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mhmoe.analysis.tokens import Batch, batch_spans, token_mask
from mhmoe.distributed import map_shared
from mhmoe.observe import record_routes


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _model_inputs(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "position_ids")}


def _capture(model: nn.Module, modules: list[str], seen: dict, *, outputs: bool = False) -> list:
    """Forward hooks keeping each named module's latest input (and output): h and, for gradients, y."""

    def hook(name: str) -> Callable[..., None]:
        return lambda module, args, out: seen.__setitem__(name, (args[0], out) if outputs else args[0])

    return [model.get_submodule(name).register_forward_hook(hook(name)) for name in modules]


def router_inputs(
    model: nn.Module, batches: list[Batch], modules: list[str], keep: np.ndarray, progress: bool = True
) -> dict[str, np.ndarray]:
    """h at every named module for the kept tokens (keep: a boolean mask over all analysed tokens)."""
    model.eval()
    offsets, seen = batch_spans(batches)[0], {}
    handles = _capture(model, modules, seen)

    @torch.no_grad()
    def one(index: int, batch: Batch) -> dict[str, np.ndarray]:
        mask = token_mask(batch)
        model(**_model_inputs(batch, _device(model)), use_cache=False)
        take = torch.from_numpy(keep[offsets[index] : offsets[index] + int(mask.sum())])
        return {name: seen[name][mask.to(seen[name].device)][take].float().cpu().numpy() for name in modules}

    try:
        parts = map_shared(one, batches, desc="router inputs", progress=progress)
    finally:
        for handle in handles:
            handle.remove()
    return {name: np.concatenate([p[name] for p in parts]) for name in modules}


def _token_losses(logits: torch.Tensor, batch: Batch, mask: torch.Tensor) -> torch.Tensor:
    targets = batch["input_ids"][:, 1:].to(logits.device)
    logits = logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32))  # no half-precision softmax
    losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return losses[mask[:, :-1].to(logits.device)]


def routes_and_losses(
    model: nn.Module, batches: list[Batch], modules: list[str], progress: bool = True
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per analysed token: each named MoE module's chosen experts (T, H, k) and the next-token loss (T,)."""
    model.eval()

    @torch.no_grad()
    def one(index: int, batch: Batch) -> tuple[dict[str, np.ndarray], np.ndarray]:
        mask = token_mask(batch)
        with record_routes(model, probs=False) as logs:
            logits = model(**_model_inputs(batch, _device(model)), use_cache=False).logits
        routes = {name: logs[name].chosen[-1][mask].numpy() for name in modules}  # (B, L, H, k) -> (n, H, k)
        return routes, _token_losses(logits, batch, mask).cpu().numpy()

    parts = map_shared(one, batches, desc="routes and losses", progress=progress)
    routes = {name: np.concatenate([r[name] for r, _ in parts]) for name in modules}
    return routes, np.concatenate([losses for _, losses in parts])


def output_gradients(
    model: nn.Module, batches: list[Batch], modules: list[str], keep: np.ndarray, progress: bool = True
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """For the kept tokens: each module's input x_t and the loss gradient delta_t at its output.

    The loss is the summed next-token loss of every analysed token, so sum_t delta_t x_t^T is the batch
    gradient of each module's weight. Gradients flow from the input embeddings, so frozen weights suffice.
    """
    model.eval()
    offsets, seen = batch_spans(batches)[0], {}
    handles = _capture(model, modules, seen, outputs=True)
    embed = model.get_input_embeddings()

    def one(index: int, batch: Batch) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        mask = token_mask(batch)
        take = torch.from_numpy(keep[offsets[index] : offsets[index] + int(mask.sum())])
        if not take.any():  # no sampled token here: skip the forward and backward
            return {name: (torch.zeros(0, 0, dtype=torch.float64),) * 2 for name in modules}
        inputs = _model_inputs(batch, _device(model))
        ids = inputs.pop("input_ids")
        embeds = embed(ids).detach().requires_grad_()
        logits = model(inputs_embeds=embeds, **inputs, use_cache=False).logits
        loss = _token_losses(logits, batch, mask).sum()
        pairs = [seen[name] for name in modules]
        grads = torch.autograd.grad(loss, [out for _, out in pairs])
        on_device = mask.to(ids.device)
        return {
            name: (x.detach()[on_device][take].double().cpu(), g[on_device][take].double().cpu())
            for name, (x, _), g in zip(modules, pairs, grads, strict=True)
        }

    try:
        parts = map_shared(one, batches, desc="token gradients", progress=progress)
    finally:
        for handle in handles:
            handle.remove()
    kept = [p for p in parts if p[modules[0]][0].numel()] if modules else []
    return {name: (torch.cat([p[name][0] for p in kept]), torch.cat([p[name][1] for p in kept])) for name in modules}
