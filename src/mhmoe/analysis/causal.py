"""Causal forgetting attribution: which expert's update by task j raised task i's answer loss.

The token-grouping split (attribution.py) says where the damaged tokens were routed; any grouping of tokens
sums to the total, so it cannot say which expert's update did the damage. This is an intervention: with the
adapter after task j, one expert's parameters (its A and B; for MH-MoE one head's expert) alone are put back to
their values before task j, and task i's answer loss is measured again:

    effect(e) = L_i(after j) - L_i(after j, expert e as before j)

positive when expert e's update by task j raised task i's loss. Its standard error comes from the examples
(each example's summed answer-NLL change over the mean answer tokens per example). Effects need not add up to
the total change L_i(j) - L_i(j - 1): the router, the other layers and interactions between experts carry the
rest, and the report says how far they do (`sum_of_effects` against `total`).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from mhmoe.analysis.tokens import Batch
from mhmoe.cl.loss import answer_nll_per_example
from mhmoe.inject import WEIGHTS_NAME, load_adapter

EXPERT_TENSORS = {"adapter_A": lambda h, e: (h, slice(None), e), "adapter_B": lambda h, e: (h, e)}
"""Where expert e of head h sits in each of a routed layer's tensors: A (H, d_h, K, r) and B (H, K, r, d_out)."""


def task_rows(batches: list[Batch], task: int) -> list[Batch]:
    """The batches' rows of one task (empty batches dropped)."""
    picked = []
    for batch in batches:
        rows = torch.nonzero(batch["task"] == task).reshape(-1)
        if len(rows):
            picked.append({k: v[rows] for k, v in batch.items()})
    return picked


@torch.no_grad()
def example_nll(model: nn.Module, batches: list[Batch]) -> tuple[np.ndarray, np.ndarray]:
    """Each example's summed answer-token NLL and its answer-token count."""
    device = next(model.parameters()).device
    parts = [answer_nll_per_example(model, {k: v.to(device) for k, v in b.items() if k != "task"}) for b in batches]
    return (np.concatenate([nll.float().cpu().numpy() for nll, _ in parts]),
            np.concatenate([count.cpu().numpy() for _, count in parts]))  # fmt: skip


def _effect(after: np.ndarray, reverted: np.ndarray, tokens: np.ndarray) -> tuple[float, float]:
    """The token-weighted mean NLL change and its standard error over examples (ratio estimator)."""
    change = after - reverted
    effect = float(change.sum() / tokens.sum())
    if len(change) < 2:
        return effect, math.nan
    residual = change - effect * tokens
    return effect, float(residual.std(ddof=1) / math.sqrt(len(change)) / tokens.mean())


@torch.no_grad()
def expert_effects(
    model: nn.Module, before: dict[str, torch.Tensor], modules: list[str], batches: list[Batch]
) -> list[dict[str, Any]]:
    """Every (module, head, expert)'s effect on the batches' answer loss, putting it back to `before` alone."""
    after, tokens = example_nll(model, batches)
    effects = []
    for name in modules:
        layer = model.get_submodule(name)
        for h in range(layer.heads):
            for e in range(layer.experts):
                saved = {}
                for tensor, where in EXPERT_TENSORS.items():
                    param = getattr(layer, tensor)
                    saved[tensor] = param[where(h, e)].clone()
                    param[where(h, e)] = before[f"{name}.{tensor}"][where(h, e)].to(param)
                reverted, _ = example_nll(model, batches)
                for tensor, where in EXPERT_TENSORS.items():
                    getattr(layer, tensor)[where(h, e)] = saved[tensor]
                effect, error = _effect(after, reverted, tokens)
                effects.append({"module": name, "head": h, "expert": e, "effect": effect, "se": error})
    return effects


def pair_summary(effects: list[dict[str, Any]], total: float, top: int = 5) -> dict[str, Any]:
    """The top experts by effect, the sum of all effects against the total change, and the sum per module."""
    ranked = sorted(effects, key=lambda row: -row["effect"])
    per_module: dict[str, float] = {}
    for row in effects:
        per_module[row["module"]] = per_module.get(row["module"], 0.0) + row["effect"]
    return {
        "total": total,
        "sum_of_effects": float(sum(row["effect"] for row in effects)),
        "top": ranked[:top],
        "per_module": per_module,
    }


def causal_attribution(
    model: nn.Module, folders: list[Path], batches: list[Batch], modules: list[str]
) -> dict[str, dict[str, Any]]:
    """For every pair i < j ("j,i"): each expert's effect on task i's answer loss (`expert_effects`, adapter
    after task j against the one after j - 1), summarised by `pair_summary` against the total change."""
    pairs, previous = {}, None
    for k, folder in enumerate(folders):
        adapted = load_adapter(copy.deepcopy(model), folder)
        current = {i: example_nll(adapted, task_rows(batches, i)) for i in range(min(k + 1, len(folders) - 1))}
        if previous is not None:
            before = load_file(folders[k - 1] / WEIGHTS_NAME)
            for i in range(k):
                total = float((current[i][0].sum() - previous[i][0].sum()) / current[i][1].sum())
                effects = expert_effects(adapted, before, modules, task_rows(batches, i))
                pairs[f"{k},{i}"] = pair_summary(effects, total)
        previous = current
        del adapted
    return pairs
