"""Batches (loss on answer tokens only) and greedy evaluation against an unbatched, cache-free greedy loop."""

import pytest
import torch

from mhmoe.cl.evaluate import generate, score_task
from mhmoe.data.collate import IGNORE, encode, prompt_batch, training_batch
from mhmoe.data.trace import Example, Task
from mhmoe.metrics.text import mean_score
from mhmoe.models import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def test_labels_cover_answer_and_eos_only(tokenizer):
    example = Example("Question: 2+2? Answer:", "4")
    ids, labels = encode(tokenizer, example, max_length=64)
    prompt_len = len(tokenizer(example.prompt).input_ids)
    assert labels[:prompt_len] == [IGNORE] * prompt_len
    assert labels[prompt_len:] == ids[prompt_len:] == tokenizer(" 4", add_special_tokens=False).input_ids + [1]


def test_truncation_drops_prompt_start_not_answer(tokenizer):
    ids, labels = encode(tokenizer, Example("x " * 100 + "Answer:", "the answer"), max_length=12)
    answer = tokenizer(" the answer", add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    assert len(ids) == 12 and ids[-len(answer) :] == answer and labels[-len(answer) :] == answer


def test_padding_sides(tokenizer):
    batch = training_batch(tokenizer, [Example("a", "b"), Example("a longer prompt", "c")], max_length=32)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["attention_mask"][0, 0] == 0 and batch["labels"][0, 0] == IGNORE  # left-padded
    real = int(batch["attention_mask"][0].sum())  # the unpadded row counts its positions from 0
    assert batch["position_ids"][0, -real:].tolist() == list(range(real))
    prompts = prompt_batch(tokenizer, ["a", "a longer prompt"], max_length=32)
    assert prompts["attention_mask"][0, 0] == 0 and prompts["attention_mask"][0, -1] == 1  # left-padded
    assert prompts["input_ids"][0, 0] == tokenizer.pad_token_id


def greedy_reference(model, tokenizer, prompt, max_new_tokens):
    """One prompt, no padding, no cache: append the argmax token until EOS or the limit."""
    ids = tokenizer(prompt).input_ids
    new = []
    for _ in range(max_new_tokens):
        logits = model(torch.tensor([ids + new])).logits[0, -1]
        token = int(logits.argmax())
        if token == tokenizer.eos_token_id:
            break
        new.append(token)
    return tokenizer.decode(new, skip_special_tokens=True).strip()


def test_batched_cached_generation_matches_reference(tokenizer):
    model = tiny_model(vocab=len(tokenizer), seed=4).double()
    prompts = ["Answer: A", "the a of 12", "Answer:", "9 8 7 6 5 4 3 the"]
    got = generate(model, tokenizer, prompts, max_new_tokens=6, batch_size=3)
    with torch.no_grad():
        want = [greedy_reference(model, tokenizer, p, 6) for p in prompts]
    assert got == want and any(got)


def test_training_on_collated_labels_teaches_generation(tokenizer):
    torch.manual_seed(0)
    model = tiny_model(vocab=len(tokenizer)).train()
    examples = [Example("Answer: A", "7 7"), Example("the a of", "B")]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = training_batch(tokenizer, examples, max_length=32)
    for _ in range(60):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    task = Task("toy", "accuracy", 4, {"test": examples})
    found = score_task(model, tokenizer, task)
    score, predictions = found.score, found.predictions
    assert predictions == ["7 7", "B"] and score == 100.0 and found.error == 0.0
    assert mean_score("accuracy", predictions, ["7 7", "C"]) == 50.0


@pytest.mark.parametrize("training", [True, False])
def test_evaluating_switches_to_eval_and_restores_the_previous_mode_even_on_an_error(training):
    from torch import nn

    from mhmoe.cl.eval_mode import evaluating

    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train(training)
    with evaluating(model):
        assert not model.training and not model[1].training
    assert model.training == training and model[1].training == training
    with pytest.raises(RuntimeError, match="boom"), evaluating(model):
        raise RuntimeError("boom")
    assert model.training == training
