"""The MH-MoE layer line by line (the research's Algorithm 1): one token and one head at a time.

`HeadedMoELinear` computes the same thing dense-masked and head-batched, which is fast and hard to read.
This loop follows the equation literally, for each token n:

    y_n = W x_n + (alpha / r) * sum_m sum_{j in S_m(n)} a_{m,j} B_j^(m) A_j^(m) x_{n,m}

It reads the layer's own parameters, so a changed layer can be checked against it on small inputs
(`torch.testing.assert_close(layer(x), reference_forward(layer, x))`); the tests do exactly that, for
outputs and gradients. It is slow by design (Python loops over tokens, heads and experts): never train with it.
"""

from __future__ import annotations

import torch

from mhmoe.adapters.moe import HeadedMoELinear


def gate_weights(logits: torch.Tensor, chosen: list[int], gate: str) -> list[torch.Tensor]:
    """a_{m,j} for the chosen experts: softmax over the chosen logits ('selected') or over all ('full')."""
    over = chosen if gate == "selected" else list(range(len(logits)))
    exps = {j: torch.exp(logits[j] - logits[over].max()) for j in over}
    total = sum(exps.values())
    return [exps[j] / total for j in chosen]


def reference_forward(layer: HeadedMoELinear, x: torch.Tensor) -> torch.Tensor:
    """The layer's output for x (..., d_in), computed one token and head at a time."""
    flat = x.reshape(-1, layer.in_features)
    d_h = layer.head_dim
    rows = []
    for n in range(flat.shape[0]):
        y = layer.base_layer(flat[n])  # W x_n
        for m in range(layer.heads):
            x_m = flat[n, m * d_h : (m + 1) * d_h]  # head m's slice of the router input
            logits = torch.stack([x_m @ layer.adapter_router[m, :, j] for j in range(layer.experts)])
            chosen = sorted(range(layer.experts), key=lambda j: -logits[j].item())[: layer.top_k]  # S_m(n)
            for j, a in zip(chosen, gate_weights(logits, chosen, layer.gate), strict=True):
                expert_out = (layer.dropout(x_m) @ layer.adapter_A[m, :, j, :]) @ layer.adapter_B[m, j]
                y = y + layer.scaling * a * expert_out
        rows.append(y)
    return torch.stack(rows).reshape(*x.shape[:-1], layer.out_features)
