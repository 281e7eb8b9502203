"""Model passes over the analysed tokens, batch by batch: router inputs, routes, per-token losses and
per-token output gradients. Only what a caller keeps is stored, so long corpora stream in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mhmoe.analysis.tokens import token_mask
from mhmoe.observe import record_routes


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _model_inputs(batch: dict, device) -> dict:
    return {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "position_ids")}


@contextmanager
def _captured_inputs(model: nn.Module, modules: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks that keep the latest input of each named module (the router input h)."""
    seen: dict[str, torch.Tensor] = {}
    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda m, args, out, name=name: seen.__setitem__(name, args[0])
        )
        for name in modules
    ]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def _kept(keep: np.ndarray, offset: int, count: int) -> torch.Tensor:
    return torch.from_numpy(keep[offset : offset + count])


@torch.no_grad()
def router_inputs(
    model, batches, modules: list[str], keep: np.ndarray, progress: bool = True
) -> dict[str, np.ndarray]:
    """h at every named module for the kept tokens (keep: a boolean mask over all analysed tokens)."""
    model.eval()
    stored = {name: [] for name in modules}
    offset = 0
    with _captured_inputs(model, modules) as seen:
        for batch in tqdm(batches, desc="router inputs", disable=not progress, leave=False):
            mask = token_mask(batch)
            model(**_model_inputs(batch, _device(model)), use_cache=False)
            take = _kept(keep, offset, int(mask.sum()))
            for name in modules:
                stored[name].append(seen[name][mask.to(seen[name].device)][take].float().cpu().numpy())
            offset += int(mask.sum())
    return {name: np.concatenate(parts) for name, parts in stored.items()}


def _token_losses(logits: torch.Tensor, batch: dict, mask: torch.Tensor) -> torch.Tensor:
    targets = batch["input_ids"][:, 1:].to(logits.device)
    logits = logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32))  # no half-precision softmax
    losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return losses[mask[:, :-1].to(logits.device)]


@torch.no_grad()
def routes_and_losses(model, batches, modules: list[str], progress: bool = True):
    """Per analysed token: each named MoE module's chosen experts (T, H, k) and the next-token loss (T,)."""
    model.eval()
    routes = {name: [] for name in modules}
    losses = []
    with record_routes(model, probs=False) as logs:
        for batch in tqdm(batches, desc="routes and losses", disable=not progress, leave=False):
            mask = token_mask(batch)
            logits = model(**_model_inputs(batch, _device(model)), use_cache=False).logits
            losses.append(_token_losses(logits, batch, mask).cpu())
            for name, log in logs.items():
                if name in routes:
                    routes[name].append(log.chosen[-1][mask])  # (B, L, H, k) of this forward
                log.chosen.clear()  # layers not analysed keep nothing: memory stays bounded
    return {name: torch.cat(parts).numpy() for name, parts in routes.items()}, torch.cat(losses).numpy()


def output_gradients(model, batches, modules: list[str], keep: np.ndarray, progress: bool = True):
    """For the kept tokens: each module's input x_t and the loss gradient delta_t at its output.

    The loss is the summed next-token loss of every analysed token, so sum_t delta_t x_t^T is the batch
    gradient of each module's weight. Gradients flow from the input embeddings, so frozen weights suffice.
    """
    model.eval()
    stored = {name: ([], []) for name in modules}
    offset = 0
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda m, args, out, name=name: outputs.__setitem__(name, (args[0], out))
        )
        for name in modules
    ]
    embed = model.get_input_embeddings()
    try:
        for batch in tqdm(batches, desc="token gradients", disable=not progress, leave=False):
            mask = token_mask(batch)
            inputs = _model_inputs(batch, _device(model))
            ids = inputs.pop("input_ids")
            embeds = embed(ids).detach().requires_grad_()
            logits = model(inputs_embeds=embeds, **inputs, use_cache=False).logits
            loss = _token_losses(logits, batch, mask).sum()
            pairs = [outputs[name] for name in modules]
            grads = torch.autograd.grad(loss, [out for _, out in pairs])
            take = _kept(keep, offset, int(mask.sum()))
            device_mask = mask.to(ids.device)
            for name, (x, _), g in zip(modules, pairs, grads, strict=True):
                stored[name][0].append(x.detach()[device_mask][take].double().cpu())
                stored[name][1].append(g[device_mask][take].double().cpu())
            offset += int(mask.sum())
    finally:
        for handle in handles:
            handle.remove()
    return {name: (torch.cat(xs), torch.cat(gs)) for name, (xs, gs) in stored.items()}
