"""The loss matrix: a task's answer NLL against a per-example, unpadded, teacher-forced reference, and the
metrics computed from L by hand."""

import pytest
import torch

from mhmoe.cl.evaluate import task_loss
from mhmoe.data.collate import training_batch
from mhmoe.data.trace import Example, Task
from mhmoe.metrics import final_old_loss, forgetting_curves, loss_bwt
from mhmoe.models import tiny_model, tiny_tokenizer

from references import reference_loss

EXAMPLES = [Example("Answer: A", "7 7"), Example("the a of 12 3", "B"), Example("9", "the answer of 5 and 6")]


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_task_loss_matches_the_unpadded_reference(batch_size):
    tokenizer = tiny_tokenizer()
    model = tiny_model(vocab=len(tokenizer), seed=5).double().train()
    task = Task("toy", "accuracy", 4, {"test": EXAMPLES})
    got = task_loss(model, tokenizer, task, batch_size=batch_size, max_length=64)
    with torch.no_grad():
        expected = float(reference_loss(model, tokenizer, EXAMPLES))
    assert got == pytest.approx(expected, rel=1e-10)
    assert model.training  # the pass leaves the model as it found it


def test_loss_bwt_and_curves_by_hand():
    L = [[0.5, 3.0, 4.0], [1.5, 0.2, 4.0], [2.0, 1.2, 0.1]]
    assert loss_bwt(L) == pytest.approx(((2.0 - 0.5) + (1.2 - 0.2)) / 2)  # +1.25: forgetting is positive
    assert forgetting_curves(L) == [[0.5, 1.5, 2.0], [0.2, 1.2], [0.1]]
    assert loss_bwt([[0.3]]) == 0.0
    assert final_old_loss(L) == pytest.approx((2.0 + 1.2) / 2) and final_old_loss([[0.3]]) == 0.0
    with pytest.raises(ValueError, match="must be square"):
        loss_bwt([[1.0, 2.0]])


def test_loss_of_a_model_that_knows_the_answer_is_small():
    """Planted: after fitting the examples, their answer NLL falls far below the untrained one."""
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    model = tiny_model(vocab=len(tokenizer)).train()
    task = Task("toy", "accuracy", 8, {"test": EXAMPLES})
    before = task_loss(model, tokenizer, task, max_length=64)
    batch = training_batch(tokenizer, EXAMPLES, max_length=64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(80):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    assert task_loss(model, tokenizer, task, max_length=64) < 0.1 * before
