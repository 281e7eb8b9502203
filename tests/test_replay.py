"""Replay: the memory, seeded draws, and the replayed loss against an independent reference."""

from contextlib import contextmanager

import pytest
import torch

import mhmoe
import mhmoe.observe
from mhmoe.cl.methods import HookContext
from mhmoe.cl.methods.replay import Replay, ReplayOptions
from mhmoe.data.trace import Example, Task
from mhmoe.errors import ConfigError
from mhmoe.models import tiny_model, tiny_tokenizer

from references import reference_loss

OLD = Task("old", "accuracy", 2, {"train": [Example(f"the {i} of", f"A {i}") for i in range(10)]})


def make(fraction=0.5, memory=4, seed=3):
    tokenizer = tiny_tokenizer()
    context = HookContext(tokenizer=tokenizer, max_length=64, seed=seed, batch_size=4)
    return Replay(ReplayOptions(fraction=fraction, memory_per_task=memory), context), tokenizer


def test_memory_holds_a_seeded_sample_of_each_finished_task():
    replay, _ = make()
    replay.after_task(None, OLD)
    stored = [e.prompt for e in replay.memory.tasks["old"]]
    assert len(set(stored)) == 4 and set(stored) <= {e.prompt for e in OLD.split("train")}
    again, _ = make()
    again.after_task(None, OLD)
    assert [e.prompt for e in again.memory.tasks["old"]] == stored


def test_draws_are_reproducible_and_sized_by_the_fraction():
    first, second = make(fraction=0.5)[0], make(fraction=0.5)[0]
    for r in (first, second):
        r.after_task(None, OLD)
    draws = [tuple(e.prompt for e in first.draw()) for _ in range(5)]
    assert draws == [tuple(e.prompt for e in second.draw()) for _ in range(5)]
    stored = {e.prompt for e in first.memory.tasks["old"]}
    assert all(len(d) == 2 and set(d) <= stored for d in draws)  # 0.5 * batch 4
    assert len(set(draws)) > 1
    assert make(fraction=0.01)[0].per_batch == 1  # at least one replayed example


def test_penalty_is_the_weighted_loss_of_the_drawn_examples():
    replay, tokenizer = make(fraction=0.5)
    model = mhmoe.attach(tiny_model(vocab=len(tokenizer), seed=1).double(), mhmoe.LoRAConfig(rank=2))
    assert replay.penalty(model) is None  # nothing stored before the first task ends
    replay.after_task(model, OLD)
    twin, _ = make(fraction=0.5)
    twin.after_task(model, OLD)
    expected = reference_loss(model, tokenizer, twin.draw()) * (2 / 4)
    torch.testing.assert_close(replay.penalty(model), expected)


@pytest.mark.parametrize("fields", [{"fraction": 0}, {"fraction": 1.5}, {"memory_per_task": 0}, {"fraction": True}])
def test_bad_options_are_refused(fields):
    with pytest.raises(ConfigError, match="replay config: field"):
        ReplayOptions(**fields)


def test_the_loop_balances_the_replayed_forward_with_the_current_one(monkeypatch):
    """Every forward of a micro-batch, replay's included, adds its balance loss: none replaces another."""
    from accelerate import Accelerator

    import mhmoe.cl.train as loop
    from mhmoe.config import TrainSettings

    collected, real = [], loop.collect_balance

    @contextmanager
    def counting(model):
        with real(model) as balance:
            yield balance
        collected.append(len(balance.losses))

    monkeypatch.setattr(loop, "collect_balance", counting)
    replay, tokenizer = make(fraction=0.5)
    config = mhmoe.MHMoEConfig(heads=4, balance_coef=0.1)
    model = mhmoe.attach(tiny_model(vocab=len(tokenizer), seed=1).double(), config)
    replay.after_task(model, OLD)
    settings = TrainSettings(batch_size=4, max_steps=1)
    loop.train_task(
        model, tokenizer, OLD, settings, accelerator=Accelerator(cpu=True), hooks=replay, seed=0, task_index=1
    )
    layers = len(mhmoe.observe.moe_layers(model))
    assert collected == [2 * layers]  # the current batch's forward and the replayed one, at every MoE layer
