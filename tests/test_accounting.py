"""Parameter counts and rank matching against values worked out by hand."""

import pytest

import mhmoe
from mhmoe.models import tiny_model


def test_activated_parameters_at_smollm2_shapes_by_hand():
    # MH-MoE, d_in=576, d_out=1536, H=8, K=4, r=8, top-1: routers 576*4, then 8 heads * (72 + 1536) * 8
    assert mhmoe.activated_parameters(mhmoe.MHMoEConfig(), 576, 1536) == 2304 + 8 * 8 * (72 + 1536)
    # LoRAMoE, same K and top-1: router 576*4 plus one rank-8 expert over the whole input
    assert mhmoe.activated_parameters(mhmoe.LoRAMoEConfig(), 576, 1536) == 2304 + 8 * (576 + 1536)
    assert mhmoe.activated_parameters(mhmoe.LoRAConfig(rank=8), 576, 1536) == 8 * 2112
    assert mhmoe.activated_parameters(mhmoe.MHMoEConfig(top_k=2), 1536, 576) == 6144 + 8 * 2 * 8 * (192 + 576)


def test_count_parameters_tiny_llama_by_hand():
    # tiny llama: 2 layers, hidden 64, intermediate 128; gate/up 64->128, down 128->64.
    model = mhmoe.attach(tiny_model(), mhmoe.MHMoEConfig(rank=2, heads=8, experts=4))
    count = mhmoe.count_parameters(model)
    # per module: router d_in*K, A d_in*K*r, B H*K*r*d_out
    gate_up = 64 * 4 + 64 * 4 * 2 + 8 * 4 * 2 * 128
    down = 128 * 4 + 128 * 4 * 2 + 8 * 4 * 2 * 64
    assert count.total == 2 * (2 * gate_up + down) == count.trainable
    assert count.activated == 2 * (2 * (256 + 8 * 2 * (8 + 128)) + (512 + 8 * 2 * (16 + 64))) == 13312
    assert count.base == sum(p.numel() for p in tiny_model().parameters())


def test_matched_rank_by_hand():
    model = tiny_model()
    reference = mhmoe.MHMoEConfig(rank=2)  # 13312 activated (above)
    # LoRA: 2 layers * 3 modules * r * (64 + 128) = 1152 r -> 11.56: r=12 (13824) beats r=11 (12672)
    assert mhmoe.matched_rank(model, mhmoe.LoRAConfig(), reference) == 12
    # LoRAMoE top-1: 2 * (2*(256 + 192 r) + (512 + 192 r)) = 2048 + 1152 r -> 9.78: r=10 (13568) beats 9 (12416)
    assert mhmoe.matched_rank(model, mhmoe.LoRAMoEConfig(), reference) == 10
    assert mhmoe.matched_rank(model, mhmoe.MHMoEConfig(rank=5), reference) == 2


def test_matched_rank_on_attached_model_and_never_below_one():
    model = mhmoe.attach(tiny_model(), mhmoe.MHMoEConfig(rank=2))
    assert mhmoe.matched_rank(model, mhmoe.LoRAConfig(), model.mhmoe_config) == 12
    tiny_ref = mhmoe.LoRAConfig(rank=1)
    assert mhmoe.matched_rank(model, mhmoe.LoRAMoEConfig(experts=64), tiny_ref) == 1


def test_count_requires_adapter():
    with pytest.raises(mhmoe.ConfigError, match="no mhmoe adapter"):
        mhmoe.count_parameters(tiny_model())
