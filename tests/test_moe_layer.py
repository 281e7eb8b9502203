"""The head-batched MoE layer against the plain per-token loop (mhmoe.adapters.reference) that follows the
MH-MoE equation literally."""

import math

import pytest
import torch
from torch import nn

import mhmoe
from mhmoe.adapters.moe import HeadedMoELinear
from mhmoe.adapters.reference import reference_forward


def make_layer(heads, top_k, gate="selected", d_in=24, d_out=10, experts=4, rank=3):
    base = nn.Linear(d_in, d_out, dtype=torch.float64)
    layer = HeadedMoELinear(
        base, rank=rank, alpha=6.0, dropout=0.0, experts=experts, top_k=top_k, heads=heads, gate=gate
    ).double()
    with torch.no_grad():
        layer.adapter_B.normal_()  # B starts at zero; give the experts something to say
    base.weight.requires_grad_(False)
    base.bias.requires_grad_(False)
    return layer


@pytest.mark.parametrize("heads", [1, 3, 8])
@pytest.mark.parametrize("top_k", [1, 2])
@pytest.mark.parametrize("gate", ["selected", "full"])
@pytest.mark.parametrize("batch_shape", [(7,), (1, 13), (3, 5)])
def test_matches_plain_loop_outputs_and_gradients(heads, top_k, gate, batch_shape):
    layer = make_layer(heads, top_k, gate)
    x = torch.randn(*batch_shape, layer.in_features, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(*batch_shape, layer.out_features, dtype=torch.float64)
    trainable = [p for p in layer.parameters() if p.requires_grad]
    assert len(trainable) == 3

    fast = layer(x)
    fast_grads = torch.autograd.grad((fast * probe).sum(), [x, *trainable])
    slow = reference_forward(layer, x)
    slow_grads = torch.autograd.grad((slow * probe).sum(), [x, *trainable])

    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-10)
    for got, want in zip(fast_grads, slow_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


class Halve(nn.Module):
    """A deterministic stand-in for dropout, so the unfused (dropout-active) path can be checked exactly."""

    def forward(self, x):
        return 0.5 * x


@pytest.mark.parametrize("top_k", [1, 2])
def test_dropout_path_feeds_experts_but_not_router(top_k):
    layer = make_layer(heads=3, top_k=top_k, gate="full").train()
    layer.dropout = Halve()
    x = torch.randn(2, 5, layer.in_features, dtype=torch.float64, requires_grad=True)
    fast_grads = torch.autograd.grad(layer(x).sum(), [x, layer.adapter_router, layer.adapter_A, layer.adapter_B])
    slow_grads = torch.autograd.grad(
        reference_forward(layer, x).sum(), [x, layer.adapter_router, layer.adapter_A, layer.adapter_B]
    )
    torch.testing.assert_close(layer(x), reference_forward(layer, x), rtol=1e-10, atol=1e-10)
    for got, want in zip(fast_grads, slow_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_unchosen_experts_get_exactly_zero_gradient():
    layer = make_layer(heads=8, top_k=1)
    x = torch.randn(3, layer.in_features, dtype=torch.float64)  # 3 tokens, 4 experts: >= 1 unchosen per head
    with mhmoe.record_routes(layer) as routes:
        layer(x).square().sum().backward()
    chosen, _ = routes[""].tokens()
    used = torch.zeros(layer.heads, layer.experts, dtype=torch.bool)
    used[torch.arange(layer.heads).expand(3, -1), chosen[:, :, 0]] = True
    assert (~used).any(dim=1).all()
    for m, j in (~used).nonzero().tolist():
        assert torch.count_nonzero(layer.adapter_A.grad[m, :, j]) == 0
        assert torch.count_nonzero(layer.adapter_B.grad[m, j]) == 0
    for m, j in used.nonzero().tolist():
        assert torch.count_nonzero(layer.adapter_B.grad[m, j]) > 0


def test_selected_gate_top1_router_learns_only_from_balance_loss():
    """With top-1 and softmax over the chosen expert, the weight is always 1: the task loss gives the router
    no gradient, so the balance loss (or gate='full') is what trains it."""
    layer = make_layer(heads=2, top_k=1)
    x = torch.randn(9, layer.in_features, dtype=torch.float64)
    layer(x).square().sum().backward()
    assert torch.count_nonzero(layer.adapter_router.grad) == 0

    full = make_layer(heads=2, top_k=1, gate="full")
    full(x).square().sum().backward()
    assert torch.count_nonzero(full.adapter_router.grad) > 0


def test_zero_B_leaves_base_output_unchanged():
    base = nn.Linear(16, 8)
    layer = HeadedMoELinear(base, rank=2, alpha=4, dropout=0.0, experts=4, top_k=2, heads=4)
    x = torch.randn(5, 16)
    torch.testing.assert_close(layer(x), base(x))


def test_float32_and_bfloat16_route_in_float32():
    layer = make_layer(heads=4, top_k=2).to(torch.bfloat16)
    out = layer(torch.randn(6, layer.in_features, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_expert_init_scale_follows_fan_in_of_a_slice():
    layer = HeadedMoELinear(nn.Linear(64, 8), rank=4, alpha=8, dropout=0.0, experts=4, top_k=1, heads=8)
    bound = 1 / math.sqrt(64 // 8)
    assert layer.adapter_A.abs().max() <= bound and layer.adapter_router.abs().max() <= bound
    assert torch.count_nonzero(layer.adapter_B) == 0
