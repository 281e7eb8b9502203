"""The one training loop: batch order, optimizer settings, accumulation, hooks, reproducibility, NaN stop."""

import math

import pytest
import torch
from accelerate import Accelerator

import mhmoe
from mhmoe.cl.methods import NoHooks
from mhmoe.cl.train import TrainingError, batch_order, make_optimizer, steps_per_task, train_task
from mhmoe.config import TrainSettings
from mhmoe.data.trace import Example, Task
from mhmoe.models import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def toy_task(n=12):
    examples = [Example(f"the {i} of", "A" if i % 2 else "B 7") for i in range(n)]
    return Task("toy", "accuracy", 3, {"train": examples, "eval": examples, "test": examples})


def adapted_model(tokenizer, config=None, dtype=torch.float64):
    model = tiny_model(vocab=len(tokenizer), seed=2).to(dtype)
    torch.manual_seed(7)
    return mhmoe.attach(model, config or mhmoe.MHMoEConfig(heads=4))


def train(model, tokenizer, task, accelerator=None, hooks=None, **settings):
    settings = TrainSettings(**{"lr": 1e-2, "batch_size": 4, **settings})
    return train_task(
        model,
        tokenizer,
        task,
        settings,
        accelerator=accelerator or Accelerator(cpu=True),
        hooks=hooks or NoHooks(),
        seed=0,
        task_index=0,
        progress=False,
    )


def adapter_state(model):
    return {k: v.detach().clone() for k, v in mhmoe.adapter_parameters(model).items()}


def test_steps_per_task_counts_epochs_and_cap():
    assert steps_per_task(TrainSettings(batch_size=4, grad_accum=2, epochs=3), 20) == math.ceil(60 / 8)
    assert steps_per_task(TrainSettings(batch_size=4, epochs=3, max_steps=5), 20) == 5


def test_batch_order_is_seeded_and_each_epoch_is_a_permutation():
    steps = batch_order(10, 5, 4, seed=1, task_index=2)
    assert steps == batch_order(10, 5, 4, seed=1, task_index=2)
    assert steps != batch_order(10, 5, 4, seed=2, task_index=2)
    flat = [i for step in steps for i in step]
    assert len(flat) == 20 and sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))


def test_optimizer_has_the_research_defaults_and_a_cosine_schedule(tokenizer):
    model = adapted_model(tokenizer, mhmoe.LoRAConfig())
    optimizer, scheduler = make_optimizer(model, TrainSettings(), steps=10)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (1e-4, (0.9, 0.95), 1e-6, 0.01)
    assert all(p.requires_grad for p in group["params"]) and len(group["params"]) == 12  # A and B of 6 linears
    lrs = []
    for _ in range(10):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([1e-4 * 0.5 * (1 + math.cos(math.pi * s / 10)) for s in range(10)])


def test_accumulation_matches_one_big_batch(tokenizer):
    """Two micro-batches of 2 with accumulation take the same step as one batch of 4 (equal answer lengths)."""
    examples = [Example(f"the {i} of", "A") for i in range(8)]
    task = Task("toy", "accuracy", 2, {"train": examples})
    big, small = adapted_model(tokenizer), adapted_model(tokenizer)
    train(big, tokenizer, task, batch_size=4, max_steps=2)
    train(small, tokenizer, task, batch_size=2, grad_accum=2, max_steps=2)
    for name, value in adapter_state(big).items():
        torch.testing.assert_close(adapter_state(small)[name], value, rtol=1e-9, atol=1e-12)


def test_training_lowers_the_loss_and_is_reproducible(tokenizer):
    task = toy_task()
    logged = []
    model = adapted_model(tokenizer)
    stats = train_task(
        model,
        tokenizer,
        task,
        TrainSettings(lr=1e-2, batch_size=4, epochs=6),
        accelerator=Accelerator(cpu=True),
        hooks=NoHooks(),
        seed=0,
        task_index=0,
        log=logged.append,
        progress=False,
    )
    assert stats.steps == len(logged) == 18 and stats.examples == 12 and stats.tokens > 0
    # A random tiny model's small lm_head caps its logits, so the loss floor is near 4.5 nats, not 0.
    assert logged[-1]["loss"] < logged[0]["loss"] - 0.7
    assert {"task", "step", "loss", "lr", "grad_norm", "tokens_per_s"} <= set(logged[0])
    # Each record carries the rate its step used: the full lr first, then the cosine's value for step 1 of 18.
    assert [r["lr"] for r in logged[:2]] == pytest.approx([1e-2, 1e-2 * 0.5 * (1 + math.cos(math.pi / 18))])
    again = adapted_model(tokenizer)
    train(again, tokenizer, task, epochs=6)
    for name, value in adapter_state(model).items():
        assert torch.equal(adapter_state(again)[name], value), name


class RecordingHooks:
    def __init__(self):
        self.calls = []

    def before_task(self, model, task):
        self.calls.append("before")

    def penalty(self, model):
        self.calls.append("penalty")
        # Pull every adapter parameter towards 1: with a huge weight the penalty dominates the update.
        return 1e3 * sum(((p - 1) ** 2).sum() for p in mhmoe.adapter_parameters(model).values())

    def after_backward(self, model):
        self.calls.append("after_backward")

    def after_task(self, model, task):
        self.calls.append("after")


def test_hooks_run_in_order_and_the_penalty_reaches_the_gradient(tokenizer):
    hooks, model = RecordingHooks(), adapted_model(tokenizer, mhmoe.LoRAConfig())
    train(model, tokenizer, toy_task(8), hooks=hooks, batch_size=2, grad_accum=2, max_steps=2, max_grad_norm=None)
    step = ["penalty", "penalty", "after_backward"]
    assert hooks.calls == ["before", *step, *step, "after"]
    B = next(p for n, p in mhmoe.adapter_parameters(model).items() if n.endswith("adapter_B"))
    assert (B > 0).all()  # B starts at 0; the penalty's pull to 1 is what moved every entry up


def test_nan_loss_stops_with_a_clear_error(tokenizer):
    model = adapted_model(tokenizer, mhmoe.LoRAConfig())
    with torch.no_grad():
        next(iter(mhmoe.adapter_parameters(model).values())).fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"toy: the loss became nan at step 1"):
        train(model, tokenizer, toy_task(4), max_steps=2)
