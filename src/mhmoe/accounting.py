"""Adapter parameter counts, total and activated per token, and size matching between adapter kinds.

The research compares methods at matched *activated* parameters: for MH-MoE every head reads its router
and runs k experts, each mapping a d_in/H slice to all of d_out, so a top-1 head-wise update is a
rank-H*r update per token. Its route-space ablation (Table 2) also matches the *total* parameter budget,
so a size (a rank, or a prefix length) can be matched by either count. A prefix method's token sees one
task's prefixes (and the gate): that is its activated count; every task's prefixes are its total.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from mhmoe.adapters import AdapterConfig
from mhmoe.errors import ConfigError
from mhmoe.inject import adapter_parameters, module_shapes


def activated_parameters(config: AdapterConfig, d_in: int, d_out: int) -> int:
    """Adapter parameters that one token touches in one adapted d_in -> d_out linear (for a prefix kind: in one
    attention layer of d_in key/value heads of width d_out); each kind's config holds its formula."""
    return config.activated_parameters(d_in, d_out)


def total_parameters(config: AdapterConfig, d_in: int, d_out: int) -> int:
    """All adapter parameters of one adapted d_in -> d_out linear (what attach allocates); each kind's config holds
    its formula."""
    return config.total_parameters(d_in, d_out)


BUDGETS = {"activated": activated_parameters, "total": total_parameters}
"""What a size can be matched by: parameters one token touches, or all of them."""


def _summed(config: AdapterConfig, shapes: Iterable[list[int]], budget: str = "activated") -> int:
    """`budget` parameters of `config` summed over linears of the given [d_in, d_out] shapes."""
    return sum(BUDGETS[budget](config, d_in, d_out) for d_in, d_out in shapes)


@dataclass(frozen=True)
class ParameterCount:
    total: int
    """All adapter parameters."""
    activated: int
    """Adapter parameters one token touches, summed over adapted modules."""
    trainable: int
    """Parameters with requires_grad (the adapter's, after attach)."""
    base: int
    """Frozen parameters of the base model."""


def count_parameters(model: nn.Module) -> ParameterCount:
    """Parameter counts of a model carrying an mhmoe adapter."""
    config = getattr(model, "mhmoe_config", None)
    if config is None:
        raise ConfigError("count_parameters: model carries no mhmoe adapter; call mhmoe.attach first")
    adapter = adapter_parameters(model)
    return ParameterCount(
        total=sum(p.numel() for p in adapter.values()),
        activated=_summed(config, module_shapes(model, config).values()),
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        base=sum(p.numel() for n, p in model.named_parameters() if n not in adapter),
    )


def matched_size(
    model: nn.Module, baseline: AdapterConfig, reference: AdapterConfig, budget: str = "activated"
) -> int:
    """The size (`baseline.size_field`: a rank, or a prefix length) for `baseline` whose `budget` ('activated' or
    'total') parameters on `model` come closest to `reference`'s.

    Each config is counted on the modules it adapts; both counts are affine in the size, so the best size is the
    rounded solution (at least 1).
    """
    if budget not in BUDGETS:
        raise ConfigError(f"matched_size: budget must be one of {sorted(BUDGETS)}, got {budget!r}")
    shapes = list(module_shapes(model, baseline).values())

    def count_at(size: int) -> int:
        return _summed(dataclasses.replace(baseline, **{baseline.size_field: size}), shapes, budget)

    target = _summed(reference, module_shapes(model, reference).values(), budget)
    per_size = count_at(2) - count_at(1)
    exact = 1 + (target - count_at(1)) / per_size
    candidates = {max(1, int(exact)), max(1, int(exact) + 1)}
    return min(candidates, key=lambda r: (abs(count_at(r) - target), r))


matched_rank = matched_size
"""The name the low-rank kinds know it by."""
