"""Standard errors, t intervals and paired differences against hand-computed values."""

import math

import numpy as np
import pytest

from mhmoe.metrics.uncertainty import paired_difference, score_error, t_interval


def test_t_interval_uses_the_t_quantile_for_two_and_three_seeds():
    # 3 values: df 2, t_0.975 = 4.302653; mean 2, s = 1, half-width 4.302653 / sqrt(3)
    found = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)
    assert (found.mean, found.low, found.high, found.n) == pytest.approx((2.0, 2.0 - half, 2.0 + half, 3))
    # 4 values: df 3, t_0.975 = 3.182446; mean 2.5, s = sqrt(5/3)
    found = t_interval([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert (found.low, found.high) == pytest.approx((2.5 - half, 2.5 + half))
    assert t_interval([7.0]).low is None and not t_interval([7.0]).excludes_zero()


def test_the_issue_example_is_not_resolved_with_three_seeds():
    """Paired loss-BWT differences -1.06, -3.15, -1.69: the same sign every time, interval [-4.62, 0.69]."""
    found = paired_difference([1.0, 2.0, 3.0], [2.06, 5.15, 4.69])
    assert found.differences == pytest.approx([-1.06, -3.15, -1.69])
    assert (found.interval.low, found.interval.high) == pytest.approx((-4.62, 0.69), abs=0.01)
    assert found.agreeing == 3 and not found.interval.excludes_zero()


def test_paired_difference_resolves_a_consistent_gap_and_counts_disagreeing_seeds():
    found = paired_difference([10.0, 11.0, 12.0, 13.0, 9.0], [5.0, 6.0, 6.5, 7.0, 10.0])
    assert found.differences == [5.0, 5.0, 5.5, 6.0, -1.0]
    assert found.agreeing == 4  # the last seed goes the other way
    assert found.interval.mean == pytest.approx(4.1)
    s = np.std([5.0, 5.0, 5.5, 6.0, -1.0], ddof=1)
    assert found.interval.low == pytest.approx(4.1 - 2.7764451051977987 * s / math.sqrt(5))
    with pytest.raises(ValueError, match="3 values against 2"):
        paired_difference([1.0, 2.0, 3.0], [1.0, 2.0])


def test_binomial_error_for_exact_match():
    # 3 right of 4: p = 0.75, se = 100 * sqrt(0.75 * 0.25 / 4)
    assert score_error("accuracy", [100.0, 100.0, 0.0, 100.0]) == pytest.approx(100 * math.sqrt(0.75 * 0.25 / 4))
    assert score_error("first_char", [100.0] * 10) == 0.0 and score_error("accuracy", [0.0]) == 0.0


def test_bootstrap_error_approaches_the_analytic_one_and_is_seeded():
    scores = np.random.default_rng(0).uniform(0, 100, size=400)
    analytic = scores.std(ddof=1) / math.sqrt(len(scores))
    found = score_error("rouge_l", scores, seed=1)
    assert found == pytest.approx(analytic, rel=0.1)
    assert score_error("rouge_l", scores, seed=1) == found  # the same seed, the same error
    assert score_error("similarity", [42.0] * 5) == 0.0
