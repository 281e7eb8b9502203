"""GEM: the dual-QP projection on hand-worked cases, its optimality conditions, and the hook on a tiny model."""

import pytest
import torch

import mhmoe
from mhmoe.cl.loss import answer_loss
from mhmoe.cl.methods import HookContext
from mhmoe.cl.methods.gem import GEM, GEMOptions, project_gradient
from mhmoe.cl.methods.memory import sample_examples
from mhmoe.data.collate import training_batch
from mhmoe.data.trace import Example, Task
from mhmoe.errors import ConfigError
from mhmoe.models import tiny_model, tiny_tokenizer

from references import reference_loss

T = torch.tensor


def test_2d_projection_onto_one_memory():
    # g = (-1, 1) conflicts with m = (1, 0); the closest g~ with g~ . m >= 0 drops the x part: (0, 1).
    got = project_gradient(T([-1.0, 1.0]), T([[1.0, 0.0]]), margin=0.0, eps=0.0)
    torch.testing.assert_close(got, T([0.0, 1.0]))


def test_2d_margin_pushes_past_the_boundary():
    # g = (-0.2, 1): the plain dual optimum v = 0.2 is below the margin 0.5, so v = 0.5 and g~ = (0.3, 1).
    got = project_gradient(T([-0.2, 1.0]), T([[1.0, 0.0]]), margin=0.5, eps=0.0)
    torch.testing.assert_close(got, T([0.3, 1.0]))


def test_3d_projection_onto_two_coupled_memories():
    # m1 = (1, 1, 0), m2 = (0, 1, 1), g = (0, -2, 0): M M^T = [[2, 1], [1, 2]], M g = (-2, -2),
    # so v = (2/3, 2/3) and g~ = g + v1 m1 + v2 m2 = (2/3, -2/3, 2/3), orthogonal to both memories.
    got = project_gradient(T([0.0, -2.0, 0.0]), T([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]), margin=0.0, eps=0.0)
    torch.testing.assert_close(got, T([2.0, -2.0, 2.0]) / 3)


def test_3d_projection_leaves_an_agreeing_memory_inactive():
    # g = (-1, 1, 1) conflicts with m1 = (1, 0, 0) only; v = (1, 0) and g~ = (0, 1, 1).
    got = project_gradient(T([-1.0, 1.0, 1.0]), T([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), margin=0.0, eps=0.0)
    torch.testing.assert_close(got, T([0.0, 1.0, 1.0]))


@pytest.mark.parametrize("seed", range(5))
def test_random_projections_satisfy_the_optimality_conditions(seed):
    generator = torch.Generator().manual_seed(seed)
    g = torch.randn(12, generator=generator, dtype=torch.float64)
    memories = torch.randn(4, 12, generator=generator, dtype=torch.float64)
    x = project_gradient(g, memories, margin=0.0, eps=0.0)
    # KKT of min |x - g|^2 s.t. M x >= 0: x - g = M^T v with v >= 0, and v_k > 0 only where M_k x = 0.
    v = torch.linalg.lstsq(memories.T, (x - g).unsqueeze(1)).solution.squeeze(1)
    torch.testing.assert_close(memories.T @ v, x - g)
    assert (memories @ x >= -1e-9).all() and (v >= -1e-9).all()
    torch.testing.assert_close(v * (memories @ x), torch.zeros(4, dtype=torch.float64), atol=1e-9, rtol=0)


def test_linearly_dependent_memories_still_project_without_conflict():
    memories = T([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)  # singular M M^T
    x = project_gradient(T([-3.0, 1.0, 5.0], dtype=torch.float64), memories, margin=0.0)
    assert (memories @ x >= -1e-6).all()
    torch.testing.assert_close(x, T([-2.8, 1.4, 5.0], dtype=torch.float64), atol=1e-6, rtol=0)  # g + (1/5) m


EXAMPLES = {
    "old": [Example("the 1 of", "A"), Example("Answer: 12", "B 7"), Example("9 8 7", "the")],
    "new": [Example("7 7 the", "B"), Example("of of 3", "A 1")],
}


def setup_model():
    tokenizer = tiny_tokenizer()
    model = mhmoe.attach(tiny_model(vocab=len(tokenizer), seed=2).double(), mhmoe.LoRAConfig(rank=2))
    with torch.no_grad():
        for p in mhmoe.adapter_parameters(model).values():
            p.normal_(std=0.3)
    context = HookContext(tokenizer=tokenizer, max_length=64, seed=0, batch_size=2)
    return model, tokenizer, context


def flat_grad(loss, params):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


def test_hook_projects_against_the_memory_gradient_of_an_independent_reference():
    model, tokenizer, context = setup_model()
    params = list(mhmoe.adapter_parameters(model).values())
    old = Task("old", "accuracy", 2, {"train": EXAMPLES["old"]})
    gem = GEM(GEMOptions(memory_per_task=3, margin=0.0), context)
    gem.after_task(model, old)
    assert gem.memory.tasks["old"] == sample_examples(old, 3, seed=0, purpose="gem")
    # The memory is split into micro-batches of 2 and 1, weighted by their share of examples.
    stored = gem.memory.tasks["old"]
    memory = flat_grad(
        (2 * reference_loss(model, tokenizer, stored[:2]) + reference_loss(model, tokenizer, stored[2:])) / 3, params
    )
    torch.testing.assert_close(gem.memory_gradient(model, params, stored), memory)

    # Take the current gradient as the exact opposite of the memory's, a guaranteed conflict.
    for p, g in zip(params, (-memory).split([p.numel() for p in params]), strict=True):
        p.grad = g.view_as(p).clone()
    gem.after_backward(model)
    projected = torch.cat([p.grad.reshape(-1) for p in params])
    assert gem.projections == 1
    assert projected @ memory >= -1e-6 * memory.norm() ** 2
    torch.testing.assert_close(projected, project_gradient(-memory, memory.unsqueeze(0), 0.0))


def test_hook_leaves_an_agreeing_gradient_alone():
    model, tokenizer, context = setup_model()
    params = list(mhmoe.adapter_parameters(model).values())
    gem = GEM(GEMOptions(memory_per_task=2), context)
    gem.after_task(model, Task("old", "accuracy", 2, {"train": EXAMPLES["old"]}))
    loss = answer_loss(model, training_batch(tokenizer, gem.memory.tasks["old"], 64))  # the memory's own batch
    loss.backward()
    before = [p.grad.clone() for p in params]
    gem.after_backward(model)
    assert gem.projections == 0
    for p, b in zip(params, before, strict=True):
        assert torch.equal(p.grad, b)


def test_no_memory_no_change():
    model, tokenizer, context = setup_model()
    gem = GEM(GEMOptions(), context)
    for p in mhmoe.adapter_parameters(model).values():
        p.grad = torch.ones_like(p)
    gem.after_backward(model)
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in mhmoe.adapter_parameters(model).values())


@pytest.mark.parametrize("fields", [{"memory_per_task": 0}, {"margin": -1.0}, {"memory_per_task": 2.5}])
def test_bad_options_are_refused(fields):
    with pytest.raises(ConfigError, match="gem config: field"):
        GEMOptions(**fields)


def test_state_round_trip_through_a_safe_file(tmp_path):
    model, tokenizer, context = setup_model()
    gem = GEM(GEMOptions(memory_per_task=2), context)
    gem.after_task(model, Task("old", "accuracy", 2, {"train": EXAMPLES["old"]}))
    torch.save(gem.state_dict(), tmp_path / "state.pt")
    resumed = GEM(GEMOptions(memory_per_task=2), context)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert resumed.memory.tasks == gem.memory.tasks and resumed.projections == gem.projections
