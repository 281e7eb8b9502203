"""The answer-only loss against a per-example, unpadded, full-logits reference."""

import pytest
import torch
from torch import nn

from mhmoe.cl.loss import answer_columns, answer_loss
from mhmoe.data.collate import IGNORE, training_batch
from mhmoe.data.trace import Example
from mhmoe.models import tiny_model, tiny_tokenizer

from references import reference_loss

EXAMPLES = [Example("Answer: A", "7 7"), Example("the a of 12 3", "B"), Example("9", "the answer of 5")]


@pytest.mark.parametrize("family", ["llama", "qwen3", "gemma3_text"])
def test_answer_loss_matches_unpadded_reference(family):
    tokenizer = tiny_tokenizer()
    model = tiny_model(family, vocab=len(tokenizer), seed=3).double()
    batch = training_batch(tokenizer, EXAMPLES, max_length=64)
    got = answer_loss(model, batch)
    torch.testing.assert_close(got, reference_loss(model, tokenizer, EXAMPLES), rtol=1e-10, atol=1e-10)


class NoLogitsToKeep(nn.Module):
    """A model whose forward has no `logits_to_keep`: the loss must slice full logits instead."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, use_cache=False):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)


def test_models_without_logits_to_keep_get_the_same_loss():
    tokenizer = tiny_tokenizer()
    model = tiny_model(vocab=len(tokenizer), seed=5).double()
    batch = training_batch(tokenizer, EXAMPLES, max_length=64)
    torch.testing.assert_close(answer_loss(NoLogitsToKeep(model), batch), answer_loss(model, batch))


def test_answer_columns_counts_trailing_labelled_span():
    labels = torch.tensor([[IGNORE, IGNORE, IGNORE, 5, 6], [IGNORE, IGNORE, 4, 5, 6]])
    assert answer_columns(labels) == 4  # columns 2..4 are labelled, plus column 1 that predicts column 2
    with pytest.raises(ValueError, match="no answer tokens"):
        answer_columns(torch.full((2, 3), IGNORE))
