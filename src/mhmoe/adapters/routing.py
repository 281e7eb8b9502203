"""Top-k routing inside each head's expert bank, its load-balancing loss, and route records.

All functions work on logits shaped (H, N, K): H heads (1 for LoRAMoE), N tokens, K experts, so
every head is routed by the same few batched operations; there is no loop over tokens or heads.
Softmax and top-k run in at least float32 whatever the model's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

GATE_MODES = ("selected", "full")


def route(logits: torch.Tensor, top_k: int, gate: str = "selected") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Choose the top-k experts of every (head, token) and weight them.

    gate="selected": weights are the softmax of the logits restricted to the chosen experts (they sum to 1;
    with top-1 the weight is always 1, so the router learns only through the balance loss).
    gate="full": weights are the full softmax's probabilities of the chosen experts (Switch-style), which
    lets a top-1 router learn from the task loss.

    Returns dense gates (H, N, K) that are zero off the chosen experts, the chosen indices (H, N, k)
    and the full router probabilities (H, N, K).
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    probs = logits.softmax(dim=-1)
    top_logits, chosen = logits.topk(top_k, dim=-1)
    weights = top_logits.softmax(dim=-1) if gate == "selected" else probs.gather(-1, chosen)
    gates = torch.zeros_like(probs).scatter(-1, chosen, weights)
    return gates, chosen, probs


def balance_loss(probs: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Switch Transformer load-balancing loss, per head, averaged over heads.

    For head h: K * sum_j f_hj * P_hj, with f_hj the share of the head's N*k choices that went to expert j
    and P_hj the mean router probability of j. It is 1 when routing is uniform and grows with imbalance.
    """
    heads, tokens, experts = probs.shape
    counts = torch.zeros_like(probs[:, 0]).scatter_add_(
        1, chosen.reshape(heads, -1), torch.ones_like(chosen.reshape(heads, -1), dtype=probs.dtype)
    )
    share = counts / max(chosen[0].numel(), 1)
    mean_prob = probs.mean(dim=1)
    return experts * (share * mean_prob).sum(dim=-1).mean()


@dataclass
class RouteLog:
    """What one MoE layer routed while recording: one entry per forward call.

    `chosen[i]` has shape (*batch, H, k) with the chosen expert indices (int16, to keep long recordings
    small); `probs[i]` has shape (*batch, H, K) with the full router probabilities (float32), both on CPU.
    """

    heads: int
    experts: int
    top_k: int
    keep_probs: bool = True
    chosen: list[torch.Tensor] = field(default_factory=list)
    probs: list[torch.Tensor] = field(default_factory=list)

    def add(self, chosen: torch.Tensor, probs: torch.Tensor, batch_shape: torch.Size) -> None:
        """Store one call's routing; `chosen` and `probs` are (H, N, .) as `route` returns them."""
        self.chosen.append(
            chosen.detach().transpose(0, 1).reshape(*batch_shape, self.heads, -1).to("cpu", torch.int16)
        )
        if self.keep_probs:
            self.probs.append(
                probs.detach().transpose(0, 1).reshape(*batch_shape, self.heads, -1).to("cpu", torch.float32)
            )

    def tokens(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """All recorded tokens flattened: chosen (T, H, k) as int64 and probs (T, H, K) or None."""
        chosen = torch.cat([c.reshape(-1, self.heads, self.top_k) for c in self.chosen]).long()
        probs = torch.cat([p.reshape(-1, self.heads, self.experts) for p in self.probs]) if self.probs else None
        return chosen, probs
