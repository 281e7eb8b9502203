"""Do compositions pull a shared weight the same way? Composition-conditioned gradient cosines (eq. 4-6).

g_t is the gradient of token t's own next-token loss with respect to an adapted linear's weight W (eq. 4,
`record.token_gradients`); an adapter's factors see it through fixed maps (dL/dB = dL/dW A^T s, dL/dA =
s B^T dL/dW), so this is adapter-agnostic. Normalised gradients are averaged per composition (eq. 5).
Coherence is the cosine between the means of two random halves of one composition, split BY EXAMPLE (the
tokens of one sequence share its context, so a token split would compare a sequence with itself);
cross-composition cosine is between two compositions' means (eq. 6).

`outer_product_gram` is kept for the cheaper quantity delta_t x_t^T of the summed loss: position t's share of
the batch gradient, which carries later positions' losses and is not eq. 4's g_t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike


def gradient_gram(gradients: torch.Tensor) -> torch.Tensor:
    """Cosines between all pairs of per-token gradients, from (N, D) rows (whole or sketched)."""
    unit = torch.nn.functional.normalize(gradients.double(), dim=1)
    return unit @ unit.T


def outer_product_gram(output_grads: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Cosines between all pairs of batch-gradient shares delta_t x_t^T, from (N, d_out) and (N, d_in).

    Rank one makes this cheap: cos(d_s x_s^T, d_t x_t^T) = cos(d_s, d_t) cos(x_s, x_t).
    """
    u = torch.nn.functional.normalize(output_grads.double(), dim=1)
    x = torch.nn.functional.normalize(inputs.double(), dim=1)
    return (u @ u.T) * (x @ x.T)


def _mean_cosine(gram: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Cosine between the means of unit vectors a and b, from their Gram entries."""
    dot = gram[np.ix_(a, b)].mean()
    norms = gram[np.ix_(a, a)].mean() * gram[np.ix_(b, b)].mean()
    return float(dot / np.sqrt(norms)) if norms > 0 else float("nan")


@dataclass(frozen=True)
class CompositionCosines:
    compositions: list[int]
    """Compositions with enough tokens, in the order of the arrays below."""
    coherence: np.ndarray
    """Per composition: mean over random by-example half splits of the cosine between the halves' mean gradients."""
    cross: np.ndarray
    """The cosine between the mean gradients of every pair of distinct compositions (upper triangle)."""


def composition_cosines(
    gram: ArrayLike,
    compositions: ArrayLike,
    examples: ArrayLike | None = None,
    *,
    min_tokens: int = 4,
    splits: int = 8,
    seed: int = 0,
) -> CompositionCosines:
    """Within-composition coherence and cross-composition cosines from a per-token gradient Gram matrix.

    examples: each token's example (sequence) id; the halves split a composition's examples, so no example
    is in both (a composition whose tokens come from one example has no coherence and is left out). None
    treats every token as its own example.
    """
    gram = np.asarray(gram, dtype=np.float64)
    compositions = np.asarray(compositions)
    examples = np.arange(len(compositions)) if examples is None else np.asarray(examples)
    rng = np.random.default_rng(seed)
    kept, members, coherence = [], [], []
    for c in np.unique(compositions):
        tokens = np.flatnonzero(compositions == c)
        owners = np.unique(examples[tokens])
        if len(tokens) < min_tokens or len(owners) < 2:
            continue
        halves = []
        for _ in range(splits):
            first = rng.permutation(owners)[: len(owners) // 2]
            in_first = np.isin(examples[tokens], first)
            halves.append(_mean_cosine(gram, tokens[in_first], tokens[~in_first]))
        kept.append(int(c))
        members.append(tokens)
        coherence.append(np.mean(halves))
    cross = [
        _mean_cosine(gram, members[i], members[j]) for i in range(len(members)) for j in range(i + 1, len(members))
    ]
    return CompositionCosines(kept, np.array(coherence), np.array(cross))
