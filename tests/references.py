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


def reference_prefix_attention(query, key, value, mask, prefix_keys, prefix_values, scaling, gate=lambda s: s):
    """Prefix attention one example and one query head at a time: the head's key/value head is head // groups;
    its prefix scores pass through `gate`, then one softmax over prefix and sequence columns.

    query (b, heads, q, d); key, value (b, kv_heads, k, d); mask additive (b, 1, q, k) or None; prefix_keys,
    prefix_values (b, kv_heads, length, d). Returns (b, q, heads, d), as Transformers' attention functions do.
    """
    batch, heads, q_len, dim = query.shape
    groups = heads // key.shape[1]
    out = torch.zeros(batch, q_len, heads, dim, dtype=query.dtype)
    for b in range(batch):
        for h in range(heads):
            kv = h // groups
            scores = query[b, h] @ key[b, kv].T * scaling
            if mask is not None:
                scores = scores + mask[b, 0]
            prefix_scores = gate(query[b, h] @ prefix_keys[b, kv].T * scaling)
            weights = torch.softmax(torch.cat([prefix_scores, scores], dim=-1), dim=-1)
            out[b, :, h] = weights @ torch.cat([prefix_values[b, kv], value[b, kv]])
    return out
