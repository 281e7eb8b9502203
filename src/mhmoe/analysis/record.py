"""Model passes over the analysed tokens, batch by batch: router inputs, routes, per-token losses, exact
per-token weight gradients (eq. 4) and the cheaper batch-gradient shares. Only what a caller keeps is
stored, so long corpora stream in bounded memory. Under several processes each takes its share of the
batches and all of them gather the results.
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


def batch_gradient_shares(
    model: nn.Module, batches: list[Batch], modules: list[str], keep: np.ndarray, progress: bool = True
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """For the kept tokens: each module's input x_t and the gradient delta_t of the SUMMED loss at its output.

    delta_t x_t^T is position t's share of the batch gradient (the shares sum to the weight's gradient of the
    summed next-token loss). It is not the gradient of token t's own loss (eq. 4): delta_t carries the losses
    of every later position of the sequence. `token_gradients` gives the exact per-token gradient.
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
        parts = map_shared(one, batches, desc="batch gradient shares", progress=progress)
    finally:
        for handle in handles:
            handle.remove()
    kept = [p for p in parts if p[modules[0]][0].numel()] if modules else []
    return {name: (torch.cat([p[name][0] for p in kept]), torch.cat([p[name][1] for p in kept])) for name in modules}


def _sketches(model: nn.Module, modules: list[str], size: int, seed: int) -> dict[str, tuple[torch.Tensor, ...]]:
    """Per module, seeded Gaussian maps P (size x d_out) and Q (size x d_in), entries N(0, 1/size); none when
    the whole gradient is no larger than the sketch (or size is 0)."""
    found = {}
    for index, name in enumerate(modules):
        d_out, d_in = model.get_submodule(name).weight.shape
        if size and size * size < d_out * d_in:
            generator = torch.Generator().manual_seed(seed * 1000 + index)
            found[name] = tuple(torch.randn(size, d, generator=generator) / size**0.5 for d in (d_out, d_in))
    return found


def token_gradients(
    model: nn.Module,
    batches: list[Batch],
    modules: list[str],
    keep: np.ndarray,
    *,
    sketch: int = 0,
    seed: int = 0,
    chunk: int = 8,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Eq. 4 for the kept tokens: the gradient of token t's own next-token loss w.r.t. each module's weight.

    Each sequence holding kept tokens is run alone (unpadded); the gradients of its kept tokens' losses at
    the module outputs come from batched vector-Jacobian products (`is_grads_batched`, `chunk` tokens per
    backward), and g_t = sum_s dl_t/dy_s x_s^T over the positions s <= t. Returns (kept tokens, d_out * d_in)
    float32 rows, in token order. With `sketch` > 0 a gradient larger than sketch^2 numbers is returned as
    P g_t Q^T (a seeded Gaussian projection, sketch x sketch): inner products, hence cosines, are preserved in
    expectation with a relative error of order 1 / sketch, and the full gradient is never stored.
    Cost: one backward pass of its sequence per kept token; memory: `chunk` x length x vocabulary logit
    gradients per backward (8 x 256 x 49,152 floats, 400 MB, for SmolLM2).
    """
    model.eval()
    offsets, seen = batch_spans(batches)[0], {}
    handles = _capture(model, modules, seen, outputs=True)
    embed, device = model.get_input_embeddings(), _device(model)
    maps = _sketches(model, modules, sketch, seed)

    def reduce(name: str, delta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        delta, x = delta.float(), x.float()  # (k, L, d_out), (L, d_in)
        if name not in maps:
            return torch.einsum("kso,si->koi", delta, x).reshape(len(delta), -1).cpu()
        p, q = (m.to(delta.device) for m in maps[name])
        return torch.einsum("ksp,sq->kpq", delta @ p.T, x @ q.T).reshape(len(delta), -1).cpu()

    def row(batch: Batch, b: int, take: np.ndarray) -> dict[str, torch.Tensor]:
        real = batch["attention_mask"][b].bool()
        ids = batch["input_ids"][b][real][None].to(device)
        embeds = embed(ids).detach().requires_grad_()
        position_ids = batch["position_ids"][b][real][None].to(device)
        logits = model(inputs_embeds=embeds, position_ids=position_ids, use_cache=False).logits[0, :-1]
        losses = F.cross_entropy(logits.float(), ids[0, 1:], reduction="none")
        outputs = [seen[name][1] for name in modules]
        inputs = {name: seen[name][0][0].detach() for name in modules}
        result = {name: [] for name in modules}
        positions = torch.from_numpy(np.flatnonzero(take))
        for start in range(0, len(positions), chunk):
            picked = positions[start : start + chunk]
            onehot = torch.zeros(len(picked), len(losses), device=device, dtype=losses.dtype)
            onehot[torch.arange(len(picked)), picked.to(device)] = 1
            grads = torch.autograd.grad(losses, outputs, grad_outputs=onehot, is_grads_batched=True, retain_graph=True)
            for name, g in zip(modules, grads, strict=True):
                result[name].append(reduce(name, g[:, 0], inputs[name]))
        return {name: torch.cat(parts) for name, parts in result.items()}

    def one(index: int, batch: Batch) -> list[dict[str, torch.Tensor]]:
        counts = token_mask(batch).sum(dim=1).tolist()
        starts = offsets[index] + np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        spans = [keep[s : s + n] for s, n in zip(starts, counts, strict=True)]
        return [row(batch, b, take) for b, take in enumerate(spans) if take.any()]

    try:
        parts = [r for p in map_shared(one, batches, desc="per-token gradients", progress=progress) for r in p]
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.cat([p[name] for p in parts]) if parts else torch.zeros(0, 0) for name in modules}
