"""EWC: the Fisher by hand and against an independent per-example reference, the penalty, accumulation."""

import pytest
import torch
import torch.nn.functional as F

import mhmoe
from mhmoe.cl.methods import HookContext
from mhmoe.cl.methods.ewc import EWC, EWCOptions, diagonal_fisher
from mhmoe.data.collate import encode
from mhmoe.data.trace import Example, Task
from mhmoe.errors import ConfigError
from mhmoe.models import tiny_model, tiny_tokenizer

EXAMPLES = [Example("the 1 of", "A"), Example("Answer: 12", "B 7"), Example("9 8 7", "the")]


def test_fisher_by_hand():
    # loss_i = (theta . x_i - y_i)^2 / 2, gradient (theta . x_i - y_i) x_i, theta = (1, 2):
    # x1 = (1, 0), y1 = 0: residual 1, gradient (1, 0); x2 = (1, 1), y2 = 1: residual 2, gradient (2, 2).
    # Fisher = mean of squares = ((1 + 4) / 2, (0 + 4) / 2) = (2.5, 2).
    theta = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    data = [(torch.tensor([1.0, 0.0]), 0.0), (torch.tensor([1.0, 1.0]), 1.0)]
    losses = [lambda x=x, y=y: (theta @ x - y) ** 2 / 2 for x, y in data]
    fisher = diagonal_fisher({"theta": theta}, losses)
    torch.testing.assert_close(fisher["theta"], torch.tensor([2.5, 2.0]))


def reference_fisher(model, tokenizer, examples):
    """Per example: unpadded full logits, summed log-probabilities of the answer tokens, squared gradients."""
    params = mhmoe.adapter_parameters(model)
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for example in examples:
        ids, labels = encode(tokenizer, example, 64)
        logp = F.log_softmax(model(torch.tensor([ids])).logits[0, :-1], -1)
        answer = [(t, label) for t, label in enumerate(labels[1:]) if label != -100]
        nll = -sum(logp[t, label] for t, label in answer)
        for n, g in zip(params, torch.autograd.grad(nll, list(params.values())), strict=True):
            total[n] += g**2
    return {n: t / len(examples) for n, t in total.items()}


@pytest.fixture
def setup():
    tokenizer = tiny_tokenizer()
    model = mhmoe.attach(tiny_model(vocab=len(tokenizer), seed=1).double(), mhmoe.LoRAConfig(rank=2))
    with torch.no_grad():
        for p in mhmoe.adapter_parameters(model).values():
            p.normal_(std=0.1)  # B = 0 would zero every A gradient
    context = HookContext(tokenizer=tokenizer, max_length=64, seed=0)
    task = Task("t", "accuracy", 2, {"train": EXAMPLES})
    return model, tokenizer, context, task


def test_hook_fisher_matches_reference_and_ignores_the_penalty(setup):
    model, tokenizer, context, task = setup
    ewc = EWC(EWCOptions(lam=1e6, fisher_examples=8), context)
    ewc.after_task(model, task)
    want = reference_fisher(model, tokenizer, EXAMPLES)
    for name, value in want.items():
        torch.testing.assert_close(ewc.fisher[name], value, rtol=1e-9, atol=1e-15)
    with torch.no_grad():  # move away from the anchor, so a huge penalty (and its gradient) now exists
        for p in mhmoe.adapter_parameters(model).values():
            p.add_(0.05)
    assert float(ewc.penalty(model).detach()) > 0
    ewc.after_task(model, Task("t2", "accuracy", 2, {"train": EXAMPLES}))
    second = reference_fisher(model, tokenizer, EXAMPLES)
    for name in want:  # summed: the first Fisher plus the new one, with no trace of the penalty
        torch.testing.assert_close(ewc.fisher[name], want[name] + second[name], rtol=1e-9, atol=1e-15)


def test_penalty_and_online_decay_by_hand(setup):
    model, _, context, task = setup
    ewc = EWC(EWCOptions(lam=4.0, decay=0.5), context)
    assert ewc.penalty(model) is None  # nothing to protect before the first task
    params = mhmoe.adapter_parameters(model)
    ewc.fisher = {n: torch.full_like(p, 2.0) for n, p in params.items()}
    ewc.anchor = {n: p.detach() - 0.5 for n, p in params.items()}
    count = sum(p.numel() for p in params.values())
    # lambda / 2 * sum F (theta - theta*)^2 = 2 * sum 2 * 0.25 = count
    assert float(ewc.penalty(model).detach()) == pytest.approx(count)
    old = {n: f.clone() for n, f in ewc.fisher.items()}
    ewc.after_task(model, task)
    new = reference_fisher(model, context.tokenizer, EXAMPLES)
    for name in old:
        torch.testing.assert_close(ewc.fisher[name], 0.5 * old[name] + new[name], rtol=1e-9, atol=1e-15)


def test_options_are_validated():
    with pytest.raises(ConfigError, match="'decay' must be in"):
        EWCOptions(decay=1.5)
    from mhmoe.config import load_config

    with pytest.raises(ConfigError, match=r"unknown config field 'method_options\.ewc\.lamda'"):
        load_config(None, ["method_options.ewc.lamda=3"])
    with pytest.raises(ConfigError, match="method 'lora' takes no options"):
        load_config(None, ["method_options.lora.lam=3"])
