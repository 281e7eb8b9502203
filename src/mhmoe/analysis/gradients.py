"""Do compositions pull a shared weight the same way? Composition-conditioned gradient cosines (eq. 4-6).

The gradient of the next-token loss with respect to an adapted linear's weight W splits over token
positions: dL/dW = sum_t delta_t x_t^T, with x_t the layer's input (the router input h) and delta_t the
loss gradient at its output. Each term g_t = delta_t x_t^T is that token's gradient; an adapter's factors
see it through fixed maps (dL/dB = dL/dW A^T s, dL/dA = s B^T dL/dW), so this is adapter-agnostic.
Rank one makes cosines cheap without ever forming g_t:

    cos(g_s, g_t) = cos(delta_s, delta_t) * cos(x_s, x_t)

Normalised gradients are averaged per composition. Coherence is the cosine between the means of two
random halves of one composition; cross-composition cosine is between two compositions' means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike


def token_gradient_gram(output_grads: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Cosines between all pairs of per-token gradients delta_t x_t^T, from (N, d_out) and (N, d_in)."""
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
    """Per composition: mean over random half splits of the cosine between the halves' mean gradients."""
    cross: np.ndarray
    """The cosine between the mean gradients of every pair of distinct compositions (upper triangle)."""


def composition_cosines(
    gram: ArrayLike, compositions: ArrayLike, *, min_tokens: int = 4, splits: int = 8, seed: int = 0
) -> CompositionCosines:
    """Within-composition coherence and cross-composition cosines from a per-token gradient Gram matrix."""
    gram = np.asarray(gram, dtype=np.float64)
    compositions = np.asarray(compositions)
    rng = np.random.default_rng(seed)
    kept, members, coherence = [], [], []
    for c in np.unique(compositions):
        tokens = np.flatnonzero(compositions == c)
        if len(tokens) < min_tokens:
            continue
        halves = []
        for _ in range(splits):
            shuffled = rng.permutation(tokens)
            half = len(shuffled) // 2
            halves.append(_mean_cosine(gram, shuffled[:half], shuffled[half : 2 * half]))
        kept.append(int(c))
        members.append(tokens)
        coherence.append(np.mean(halves))
    cross = [
        _mean_cosine(gram, members[i], members[j]) for i in range(len(members)) for j in range(i + 1, len(members))
    ]
    return CompositionCosines(kept, np.array(coherence), np.array(cross))
