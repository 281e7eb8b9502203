"""Causal attribution on a planted case: a model whose task-j update changed one expert of one layer only. The
intervention attributes the whole loss change to that expert and nothing to the others; the token-grouping
split (attribution.py) spreads it over routes that never used the expert, which is why it is not a cause."""

import copy

import numpy as np
import pytest
import torch

import mhmoe
from mhmoe.analysis.attribution import attribution
from mhmoe.analysis.causal import example_nll, expert_effects, pair_summary, task_rows
from mhmoe.analysis.record import routes_and_losses
from mhmoe.analysis.tokens import analysis_batches
from mhmoe.data.trace import Example
from mhmoe.inject import adapter_state
from mhmoe.models import tiny_model, tiny_tokenizer

MODULE = "model.layers.0.mlp.up_proj"
HEAD, EXPERT = 1, 2


def planted():
    """(model after task j, adapter tensors before it, analysed batches of task 0)."""
    torch.manual_seed(0)
    config = mhmoe.MHMoEConfig(heads=2, experts=3, top_k=1, rank=2, gate="full")
    model = mhmoe.attach(tiny_model("llama", vocab=256), config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "adapter_B" in name:
                param.normal_(std=0.3)
    before = {k: v.detach().clone() for k, v in adapter_state(model).items()}
    layer = model.get_submodule(MODULE)
    with torch.no_grad():  # task j's update: one expert of one head of one layer
        layer.adapter_A[HEAD, :, EXPERT] += torch.randn_like(layer.adapter_A[HEAD, :, EXPERT])
        layer.adapter_B[HEAD, EXPERT] += torch.randn_like(layer.adapter_B[HEAD, EXPERT])
    tokenizer = tiny_tokenizer()
    examples = [(0, Example(f"the a of {i} 1 2 {'3 ' * i}Answer:", "A B")) for i in range(12)]
    return model, before, analysis_batches(tokenizer, examples, 4, 64), tokenizer


def test_the_one_changed_expert_carries_the_whole_change_and_no_other_any():
    model, before, batches, _ = planted()
    modules = [MODULE, "model.layers.1.mlp.up_proj"]
    after_nll, tokens = example_nll(model, batches)
    reverted = copy.deepcopy(model)
    with torch.no_grad():
        for name, tensor in adapter_state(reverted).items():
            tensor.copy_(before[name])
    before_nll, _ = example_nll(reverted, batches)
    total = float((after_nll.sum() - before_nll.sum()) / tokens.sum())
    assert abs(total) > 1e-3  # the planted change moves the loss
    effects = expert_effects(model, before, modules, batches)
    assert len(effects) == 2 * 2 * 3
    for row in effects:
        if (row["module"], row["head"], row["expert"]) == (MODULE, HEAD, EXPERT):
            assert row["effect"] == pytest.approx(total, rel=1e-5) and row["se"] > 0
        else:
            assert row["effect"] == 0.0
    summary = pair_summary(effects, total)
    assert summary["top"][0]["expert"] == EXPERT and summary["sum_of_effects"] == pytest.approx(total, rel=1e-5)
    assert summary["per_module"]["model.layers.1.mlp.up_proj"] == 0.0
    # the model is left as it was: every expert put back after its pass
    assert example_nll(model, batches)[0].tolist() == after_nll.tolist()


def test_the_token_grouping_split_is_not_the_cause():
    model, before, batches, _ = planted()
    reverted = copy.deepcopy(model)
    with torch.no_grad():
        for name, tensor in adapter_state(reverted).items():
            tensor.copy_(before[name])
    routes_before, loss_before = routes_and_losses(reverted, batches, [MODULE], progress=False)
    _, loss_after = routes_and_losses(model, batches, [], progress=False)
    task = np.zeros(len(loss_before), dtype=int)
    split = attribution([loss_before, loss_after], [routes_before], task, ["layer 0"], top=10)
    shares = split["routes"]["1,0"]
    elsewhere = [s for s in shares if s["route"][HEAD] != EXPERT]  # routes whose head-1 choice is another expert
    assert elsewhere and any(abs(s["term"]) > 1e-4 for s in elsewhere)


def test_task_rows_keeps_one_tasks_rows():
    tokenizer = tiny_tokenizer()
    examples = [(i % 2, Example(f"q {i} Answer:", "A")) for i in range(7)]
    batches = analysis_batches(tokenizer, examples, 3, 64)
    kept = task_rows(batches, 1)
    assert sum(len(b["task"]) for b in kept) == 3 and all((b["task"] == 1).all() for b in kept)
