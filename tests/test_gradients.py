"""Composition gradient cosines against explicitly formed gradients and hand-made cases."""

import numpy as np
import pytest
import torch

from mhmoe.analysis.gradients import composition_cosines, gradient_gram, outer_product_gram


def test_outer_product_gram_equals_cosines_of_explicit_outer_products():
    torch.manual_seed(0)
    deltas, inputs = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    flat = [torch.outer(deltas[t], inputs[t]).reshape(-1) for t in range(6)]
    want = torch.tensor([[float(torch.cosine_similarity(a, b, dim=0)) for b in flat] for a in flat])
    torch.testing.assert_close(outer_product_gram(deltas, inputs), want.double())
    torch.testing.assert_close(gradient_gram(torch.stack(flat)), want.double())


def explicit_mean_cosine(vectors, a, b):
    unit = [v / np.linalg.norm(v) for v in vectors]
    ma, mb = np.mean([unit[i] for i in a], axis=0), np.mean([unit[i] for i in b], axis=0)
    return ma @ mb / (np.linalg.norm(ma) * np.linalg.norm(mb))


def test_cross_cosines_match_explicit_means():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(12, 7))
    compositions = np.repeat([0, 1, 2], 4)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    result = composition_cosines(unit @ unit.T, compositions, splits=2)
    groups = [np.arange(4), np.arange(4, 8), np.arange(8, 12)]
    want = [explicit_mean_cosine(vectors, groups[i], groups[j]) for i, j in [(0, 1), (0, 2), (1, 2)]]
    np.testing.assert_allclose(result.cross, want)
    assert result.compositions == [0, 1, 2] and result.coherence.shape == (3,)


def test_coherent_compositions_that_pull_apart():
    # Composition 0's tokens all share gradient e1, composition 1's all share -e1 (plus small noise that
    # cancels in the half means): coherence 1 within, cosine -1 across.
    vectors = np.array([[1, 0.1], [1, -0.1], [1, 0.1], [1, -0.1], [-1, 0.1], [-1, -0.1], [-1, 0.1], [-1, -0.1]])
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    result = composition_cosines(unit @ unit.T, np.repeat([0, 1], 4), splits=4)
    assert result.coherence.min() > 0.98
    assert result.cross[0] == pytest.approx(-1)


def test_small_compositions_are_left_out():
    result = composition_cosines(np.eye(5), np.array([0, 0, 0, 0, 1]), min_tokens=4)
    assert result.compositions == [0] and len(result.cross) == 0
    assert result.coherence[0] == pytest.approx(0)  # orthogonal tokens: the two halves' means are orthogonal


def test_halves_split_by_example():
    # Composition 0: example 0 has two tokens along e1, example 1 two tokens along e2. A token split can put
    # one token of each example in each half (cosine 1); the by-example split always compares e1 with e2.
    vectors = np.array([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]])
    result = composition_cosines(vectors @ vectors.T, np.zeros(4), np.array([0, 0, 1, 1]), splits=6)
    assert result.coherence[0] == pytest.approx(0)
    by_token = composition_cosines(vectors @ vectors.T, np.zeros(4), splits=20, seed=3)
    assert by_token.coherence[0] > 0.2
    # One example only: no by-example halves, so no coherence for that composition.
    assert composition_cosines(np.eye(4), np.zeros(4), np.zeros(4)).compositions == []
