"""Independent references the tests compare the library against: plain, per-example, unbatched code."""

import torch
import torch.nn.functional as F

from mhmoe.data.collate import IGNORE, encode


def reference_loss(model, tokenizer, examples, max_length=64):
    """Each example alone, no padding, logits everywhere: summed answer-token losses over their count."""
    total, count = 0.0, 0
    for example in examples:
        ids, labels = encode(tokenizer, example, max_length)
        logits = model(torch.tensor([ids])).logits[0, :-1]
        targets = torch.tensor(labels[1:])
        total = total + F.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum")
        count += int((targets != IGNORE).sum())
    return total / count
