"""Probes on synthetic router inputs with a planted feature; ablation must find the head that holds it."""

import numpy as np
import pytest

from mhmoe.analysis.probes import head_importance, head_shares, split_examples, subspace_overlap, train_probe


def planted(tokens=1200, heads=4, width=4, head=2, seed=0):
    """Noise everywhere; head `head`'s slice also carries a 3-class label as well-separated means."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, tokens)
    h = rng.normal(size=(tokens, heads * width))
    centres = np.array([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
    h[:, head * width : (head + 1) * width] += centres[y]
    return h, y


def test_probe_decodes_the_planted_feature_and_not_noise():
    h, y = planted()
    train, test = split_examples(np.arange(len(y)) // 10, 0.25, seed=0)
    assert len(set(train) & set(test)) == 0 and len(train) + len(test) == len(y)
    probe = train_probe(h[train], y[train], h[test], y[test])
    assert probe.accuracy > 0.9 and 0.3 < probe.chance < 0.4
    noise = np.random.default_rng(1).integers(0, 3, len(y))
    blind = train_probe(h[train], noise[train], h[test], noise[test])
    assert blind.accuracy < blind.chance + 0.1
    assert train_probe(h[train], np.zeros(len(train)), h[test], y[test]) is None  # one class: no probe


def test_ablation_finds_the_head_that_holds_the_feature():
    h, y = planted(head=2)
    train, test = split_examples(np.arange(len(y)), 0.25, seed=0)
    probe = train_probe(h[train], y[train], h[test], y[test])
    importance = head_importance(probe, h[train], h[test], y[test], heads=4)
    assert importance.argmax() == 2 and importance[2] > 0.4
    shares = head_shares(importance)
    assert shares.sum() == pytest.approx(1) and shares[2] > 0.9


def test_head_shares_by_hand():
    np.testing.assert_allclose(head_shares(np.array([0.2, -0.1, 0.6, 0.0])), [0.25, 0, 0.75, 0])
    np.testing.assert_allclose(head_shares(np.array([-0.1, 0.0])), [0, 0])


def test_subspace_overlap_of_known_row_spaces():
    e = np.eye(4)
    assert subspace_overlap(e[:2], e[:2]) == pytest.approx(1)
    assert subspace_overlap(e[:2], e[2:]) == pytest.approx(0, abs=1e-12)
    # span(e1, e2) vs span(e1, e3): angles 0 and 90 degrees -> mean squared cosine 1/2.
    assert subspace_overlap(e[[0, 1]], e[[0, 2]]) == pytest.approx(0.5)
    # A line at 60 degrees to e1, against e1: cos^2 60 = 1/4.
    line = np.array([[0.5, np.sqrt(3) / 2, 0, 0]])
    assert subspace_overlap(line, e[:1]) == pytest.approx(0.25)


def test_an_example_never_lands_in_both_splits():
    examples = np.random.default_rng(0).integers(0, 37, 2000)  # tokens of 37 examples, interleaved
    train, test = split_examples(examples, 0.25, seed=3)
    assert not set(examples[train]) & set(examples[test])
    assert sorted(np.concatenate([train, test])) == list(range(2000))
    assert len(set(examples[test])) == round(37 * 0.25)
    assert len(split_examples(np.zeros(5), 0.25, seed=0)[1]) == 0  # one example: nothing to hold out


def test_weights_are_in_raw_h_coordinates():
    # Column 0 carries the label; scaling it by 100 leaves the standardised probe unchanged, so the raw
    # weight on it must shrink 100-fold, and h @ W^T must reproduce the probe's logits up to a constant.
    h, y = planted(tokens=600, heads=2, width=4, head=0)
    y = (y == 0).astype(int)
    scaled = h * np.r_[100.0, np.ones(7)]
    a, b = train_probe(h, y, h, y), train_probe(scaled, y, scaled, y)
    np.testing.assert_allclose(b.weights[0, 0] * 100, a.weights[0, 0], rtol=1e-3)
    shift = b.model.decision_function(scaled) - scaled @ b.weights[0]
    np.testing.assert_allclose(shift, shift[0])
