"""Gates, the balance loss against hand-worked values, and route recording."""

import pytest
import torch

import mhmoe
import mhmoe.observe
from mhmoe.adapters.routing import balance_loss, route
from mhmoe.models import tiny_model


def test_route_selected_and_full_gates_by_hand():
    logits = torch.tensor([[[2.0, 0.0, 1.0, -1.0]]])  # one head, one token, four experts
    gates, chosen, probs = route(logits, top_k=2, gate="selected")
    assert chosen.tolist() == [[[0, 2]]]
    e = torch.tensor([1.0, torch.e**-1])
    torch.testing.assert_close(gates[0, 0], torch.stack([e[0], torch.tensor(0.0), e[1], torch.tensor(0.0)]) / e.sum())
    full, _, _ = route(logits, top_k=2, gate="full")
    denom = sum(torch.exp(torch.tensor(v)) for v in [2.0, 0.0, 1.0, -1.0])
    torch.testing.assert_close(full[0, 0, 0], torch.exp(torch.tensor(2.0)) / denom)
    assert full[0, 0, 1] == 0 and full[0, 0, 3] == 0
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 1))


def test_balance_loss_hand_values():
    probs = torch.tensor([[[0.7, 0.3], [0.4, 0.6]]])  # H=1, N=2, K=2; mean prob [0.55, 0.45]
    spread = torch.tensor([[[0], [1]]])  # f = [0.5, 0.5] -> 2 * (0.275 + 0.225) = 1.0
    packed = torch.tensor([[[0], [0]]])  # f = [1, 0]     -> 2 * 0.55 = 1.1
    torch.testing.assert_close(balance_loss(probs, spread), torch.tensor(1.0))
    torch.testing.assert_close(balance_loss(probs, packed), torch.tensor(1.1))
    two_heads = torch.cat([probs, probs])
    torch.testing.assert_close(balance_loss(two_heads, torch.cat([spread, packed])), torch.tensor(1.05))


def _layer_tensors(model):
    """Tensors a MoE layer holds outside its parameters and buffers (a forward must leave none)."""
    layers = mhmoe.observe.moe_layers(model).values()
    return [k for m in layers for k, v in vars(m).items() if isinstance(v, torch.Tensor) or (k == "balance_log" and v)]


def test_collect_balance_is_weighted_mean_over_layers_and_forwards_and_trains_top1_router():
    model = tiny_model("llama")
    mhmoe.attach(model, mhmoe.MHMoEConfig(heads=4, balance_coef=0.5)).train()
    first, second = torch.randint(0, 256, (2, 9)), torch.randint(0, 256, (3, 5))
    with mhmoe.collect_balance(model) as nothing:
        pass
    assert nothing.loss().item() == 0.0  # no forward in the block
    with mhmoe.collect_balance(model) as one:
        model(first)
    assert len(one.losses) == 6  # one per MoE layer
    layers = mhmoe.observe.moe_layers(model).values()
    with mhmoe.record_routes(model) as routes:
        model(first)
    by_hand = [balance_loss(p.transpose(0, 1), c.transpose(0, 1)) for c, p in (r.tokens() for r in routes.values())]
    torch.testing.assert_close(one.loss(), 0.5 * torch.stack(by_hand).mean())

    with mhmoe.collect_balance(model) as two:
        model(first)
        model(second)  # a second forward (replay's extra batch) adds to the first, replacing nothing
    assert len(two.losses) == 12
    with mhmoe.collect_balance(model) as other:
        model(second)
    torch.testing.assert_close(two.loss(), (one.loss() + other.loss()) / 2)
    two.loss().backward()
    routers = [p for n, p in model.named_parameters() if n.endswith("adapter_router")]
    assert all(torch.count_nonzero(p.grad) > 0 for p in routers)

    assert not _layer_tensors(model)  # outside the block a training forward stores nothing on the layers
    model(first)
    assert not _layer_tensors(model) and all(m.balance_log is None for m in layers)
    model.eval()
    with mhmoe.collect_balance(model) as evaluating:
        model(first)
    assert evaluating.losses == []  # only training forwards count


def test_collect_balance_on_plain_lora_is_zero():
    model = mhmoe.attach(tiny_model("llama"), mhmoe.LoRAConfig()).train()
    with mhmoe.collect_balance(model) as balance:
        model(torch.randint(0, 256, (1, 4)))
    assert balance.loss().item() == 0.0


@pytest.mark.parametrize("config", [mhmoe.MHMoEConfig(heads=8, top_k=2), mhmoe.LoRAMoEConfig(top_k=1)])
def test_record_routes_shapes_and_consistency(config):
    model = mhmoe.attach(tiny_model("qwen3"), config)
    ids = torch.randint(0, 256, (3, 5))
    before = model(ids).logits
    with mhmoe.record_routes(model) as routes:
        during = model(ids).logits
        model(ids[:, :4])
    torch.testing.assert_close(before, during)
    assert len(routes) == 6 and all(name.endswith(("gate_proj", "up_proj", "down_proj")) for name in routes)
    heads = getattr(config, "heads", 1)
    for log in routes.values():
        assert log.chosen[0].shape == (3, 5, heads, config.top_k)
        assert log.probs[0].shape == (3, 5, heads, config.experts)
        chosen, probs = log.tokens()
        assert chosen.shape == (27, heads, config.top_k)
        assert torch.equal(chosen[..., 0], probs.argmax(-1))  # the first choice is the most probable expert
    assert all(m.route_log is None for m in model.modules() if hasattr(m, "route_log"))


def test_record_routes_without_probs_and_on_plain_lora():
    model = mhmoe.attach(tiny_model("llama"), mhmoe.MHMoEConfig(heads=2))
    with mhmoe.record_routes(model, probs=False) as routes:
        model(torch.randint(0, 256, (1, 4)))
    assert all(log.probs == [] and log.tokens()[1] is None for log in routes.values())
    lora = mhmoe.attach(tiny_model("llama"), mhmoe.LoRAConfig())
    with pytest.raises(mhmoe.ConfigError, match="no MoE adapter"), mhmoe.record_routes(lora):
        pass
