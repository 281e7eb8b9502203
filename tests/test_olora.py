"""O-LoRA: the stacked layer against a per-task loop, the orthogonality loss on known matrices, the hooks,
and saving/loading the whole stack."""

import pytest
import torch
from torch import nn

import mhmoe
from mhmoe.adapters.olora import OLoRAConfig, OLoRALinear, train_only_task
from mhmoe.cl.methods import HookContext
from mhmoe.cl.methods.olora import OLoRA, OLoRAOptions, olora_penalty
from mhmoe.data.trace import Task
from mhmoe.errors import ConfigError
from mhmoe.models import tiny_model

T = torch.tensor


def layer_with(a_matrices, b_matrices, alpha=2.0):
    rank, d_in = a_matrices[0].shape
    base = nn.Linear(d_in, b_matrices[0].shape[0], bias=False)
    layer = OLoRALinear(base, rank=rank, alpha=alpha, dropout=0.0, tasks=len(a_matrices))
    with torch.no_grad():
        for t, (a, b) in enumerate(zip(a_matrices, b_matrices, strict=True)):
            layer.lora(t)[0].copy_(a)
            layer.lora(t)[1].copy_(b)
    return layer


def test_forward_is_the_base_plus_every_task_update():
    torch.manual_seed(0)
    a = [torch.randn(2, 5) for _ in range(3)]
    b = [torch.randn(4, 2) for _ in range(3)]
    layer = layer_with(a, b, alpha=4.0)
    x = torch.randn(7, 5)
    want = layer.base_layer(x) + sum(2.0 * x @ a[t].T @ b[t].T for t in range(3))  # alpha / r = 2
    torch.testing.assert_close(layer(x), want)


def test_orthogonality_on_known_matrices():
    # A_0 = I, A_1 = [[1, -1], [2, 3]]: A_0 A_1^T = A_1^T, whose absolute entries sum to 7.
    # A_2 = [[0, 1], [1, 0]]: A_0 A_2^T = A_2^T sums to 2; A_1 A_2^T = [[-1, 1], [3, 2]] sums to 7.
    a = [T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, -1.0], [2.0, 3.0]]), T([[0.0, 1.0], [1.0, 0.0]])]
    layer = layer_with(a, [torch.zeros(3, 2)] * 3)
    assert layer.orthogonality(0).item() == 0
    assert layer.orthogonality(1).item() == 7
    assert layer.orthogonality(2).item() == 2 + 7


def test_penalty_weights_orthogonality_and_the_new_lora_norm():
    a = [T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, -1.0], [2.0, 3.0]])]
    b = [torch.zeros(3, 2), T([[3.0, 4.0], [0.0, 0.0], [0.0, 0.0]])]
    model = nn.Sequential(layer_with(a, b))
    # ||A_1|| = sqrt(1 + 1 + 4 + 9) = sqrt(15), ||B_1|| = 5.
    want = 0.5 * 7 + 0.1 * (15**0.5 + 5)
    torch.testing.assert_close(olora_penalty(model, 1, 0.5, 0.1), torch.tensor(want))


def test_only_the_current_task_trains():
    model = nn.Sequential(layer_with([torch.eye(2)] * 3, [torch.zeros(2, 2)] * 3))
    layer = model[0]
    assert [p.requires_grad for t in range(3) for p in layer.lora(t)] == [True, True] + [False] * 4
    train_only_task(model, 2)
    assert [p.requires_grad for t in range(3) for p in layer.lora(t)] == [False] * 4 + [True, True]
    with pytest.raises(ConfigError, match="task 4 is beyond the adapter's 3"):
        train_only_task(model, 3)


def test_hooks_move_to_the_next_lora_each_task_and_add_the_penalty():
    a = [T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, -1.0], [2.0, 3.0]])]
    model = nn.Sequential(layer_with(a, [torch.zeros(3, 2)] * 2))
    hooks = OLoRA(OLoRAOptions(lambda1=0.5), HookContext(tokenizer=None, max_length=8, seed=0))
    task = Task("t", "accuracy", 2, {})
    hooks.before_task(model, task)
    assert hooks.penalty(model) is None  # nothing to be orthogonal to yet
    hooks.after_task(model, task)
    hooks.before_task(model, task)
    hooks.before_task(model, task)  # again, as a resumed run does: still task 2's LoRA
    assert [p.requires_grad for p in model[0].lora(1)] == [True, True]
    assert not any(p.requires_grad for p in model[0].lora(0))
    assert hooks.penalty(model).item() == 0.5 * 7
    resumed = OLoRA(OLoRAOptions(lambda1=0.5), HookContext(tokenizer=None, max_length=8, seed=0))
    resumed.load_state_dict(hooks.state_dict())
    assert resumed.penalty(model).item() == 0.5 * 7
    hooks.after_task(model, task)
    with pytest.raises(ConfigError, match="beyond"):
        hooks.before_task(model, task)


def test_saving_and_loading_keeps_every_task_lora(tmp_path):
    config = OLoRAConfig(rank=2, tasks=3)
    model = mhmoe.attach(tiny_model(seed=1), config)
    with torch.no_grad():
        for p in mhmoe.adapter_parameters(model).values():
            p.normal_()
    mhmoe.save_adapter(model, tmp_path)
    loaded = mhmoe.load_adapter(tiny_model(seed=1), tmp_path)
    saved = mhmoe.adapter_parameters(model)
    assert len(saved) == 2 * 3 * sum(isinstance(m, OLoRALinear) for m in model.modules())
    for name, param in mhmoe.adapter_parameters(loaded).items():
        assert torch.equal(param, saved[name])
    ids = torch.randint(0, 100, (2, 6))
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="olora config: field 'lambda1'"):
        OLoRAOptions(lambda1=-1)
    with pytest.raises(ConfigError, match="olora config: field 'tasks'"):
        OLoRAConfig(tasks=0)
