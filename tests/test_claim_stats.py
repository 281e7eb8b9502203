"""Declared claims: Holm's adjustment by hand, t and TOST verdicts on planted differences, the generated sentence."""

import math

import numpy as np
import pytest
from scipy import stats

from mhmoe.claims_spec import Claim
from mhmoe.errors import ConfigError
from mhmoe.metrics.claims import claim_sentence, holm, holm_levels, judge_claims, tost_p, two_sided_p

ALPHA = 0.05


def claim(direction="lower", *, margin=None, primary=True, metric="loss_bwt", a="mhmoe-full", b="loramoe-full"):
    return Claim(metric=metric, a=a, b=b, direction=direction, primary=primary, margin=margin)


# --- the declaration ---


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"metric": ""}, "'metric'"),
        ({"a": None}, "'a'"),
        ({"b": "mhmoe-full"}, "'a' and 'b'"),
        ({"direction": "better"}, "'direction'"),
        ({"primary": "yes"}, "'primary'"),
        ({"margin": 0.0}, "'margin'"),
        ({"margin": -1.0}, "'margin'"),
        ({"margin": math.inf}, "'margin'"),
        ({"margin": True}, "'margin'"),
    ],
)
def test_a_bad_claim_names_its_field(fields, name):
    base = {"metric": "op", "a": "mhmoe-full", "b": "lora-full", "direction": "higher"}
    with pytest.raises(ConfigError, match=name):
        Claim(**(base | fields))


def test_a_claim_knows_its_predicted_sign():
    assert claim("lower").sign == -1 and claim("higher").sign == 1
    assert str(claim()) == "mhmoe-full vs loramoe-full, loss_bwt"


# --- Holm ---


def test_holm_adjusted_p_values_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04, raised to 0.06: monotone)
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_levels(p) == pytest.approx([0.05 / 3, 0.05 / 1, 0.05 / 2, 0.05 / 4])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # 2 x 0.5 capped at 1, and 0.6 raised to it
    assert holm([]) == []


# --- one claim: t test and TOST ---


def test_t_and_tost_p_values_by_hand():
    d = [-1.0, -2.0, -3.0]  # mean -2, s 1, standard error 1/sqrt(3), df 2
    se = 1 / math.sqrt(3)
    assert two_sided_p(d) == pytest.approx(2 * stats.t.sf(2 / se, 2))
    assert two_sided_p(d) == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    # margin 5: t against -5 is 3/se, t against +5 is -7/se; the TOST p is the larger one-sided p
    assert tost_p(d, 5.0) == pytest.approx(max(stats.t.sf(3 / se, 2), stats.t.cdf(-7 / se, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        two_sided_p([1.0])


def test_tost_rejects_exactly_when_the_1_minus_2a_interval_lies_inside_the_margin():
    rng = np.random.default_rng(3)
    for _ in range(50):
        d = rng.normal(0.3, 1.0, size=6)
        for a in (0.05, 0.025, 0.0125):
            half = stats.t.ppf(1 - a, 5) * d.std(ddof=1) / math.sqrt(6)
            inside = d.mean() - half > -1.5 and d.mean() + half < 1.5
            assert (tost_p(d, 1.5) < a) == inside


def test_planted_equal_means_are_equivalent_within_a_margin_wider_than_the_noise():
    rng = np.random.default_rng(0)
    a_values = 50 + rng.normal(0, 0.05, size=5)
    b_values = 50 + rng.normal(0, 0.05, size=5)
    (found,) = judge_claims([claim("lower", margin=1.0)], [a_values - b_values])
    assert found.verdict == "equivalent within ±1" and found.within_margin
    assert found.family_size == 2  # "differ" and "within the margin"
    assert found.equivalence.low > -1 and found.equivalence.high < 1
    # the same data without a margin: nothing can be concluded
    (found,) = judge_claims([claim("lower")], [a_values - b_values])
    assert found.verdict == "not resolved"


@pytest.mark.parametrize(("direction", "verdict"), [("lower", "supported"), ("higher", "contradicted")])
def test_planted_unequal_means_are_not_equivalent_and_resolve_on_the_right_side(direction, verdict):
    rng = np.random.default_rng(1)
    d = -3.0 + rng.normal(0, 0.3, size=5)  # a is lower than b by 3, the margin is 1
    (found,) = judge_claims([claim(direction, margin=1.0)], [d])
    assert found.verdict == verdict and not found.within_margin
    assert found.p_equivalence > 0.5
    assert found.adjusted.high < 0  # the Holm-level interval excludes 0 on the verdict's side
    assert found.agreeing == (5 if direction == "lower" else 0)


def test_a_small_true_difference_inside_the_margin_is_resolved_and_marked_within():
    d = 0.5 + np.random.default_rng(2).normal(0, 0.05, size=6)
    (found,) = judge_claims([claim("higher", margin=2.0)], [d])
    assert found.verdict == "supported" and found.within_margin


def test_a_family_on_planted_data_is_judged_with_holm():
    rng = np.random.default_rng(4)
    claims = [
        claim("lower"),  # planted -3: supported
        claim("higher", metric="op"),  # planted -4: contradicted
        claim("higher", metric="bwt"),  # raw p 0.040 < 0.05, but third of four: Holm 2 x 0.040 = 0.080
        claim("higher", metric="fwt"),  # noise
    ]
    differences = [
        -3 + rng.normal(0, 0.5, 5),
        -4 + rng.normal(0, 0.5, 5),
        [1.0, 2.0, 0.5, 1.5, 0.1],
        [0.3, -0.5, 0.8, -0.1, 0.2],
    ]
    found = judge_claims(claims, differences)
    assert [r.verdict for r in found] == ["supported", "contradicted", "not resolved", "not resolved"]
    p = np.array([r.p for r in found])
    assert p[2] == pytest.approx(0.03984, abs=1e-4) and found[2].p_holm == pytest.approx(2 * p[2])
    order = np.argsort(p)
    by_hand = np.minimum(1, np.maximum.accumulate((4 - np.arange(4)) * p[order]))
    assert [found[i].p_holm for i in order] == pytest.approx(by_hand)
    assert found[2].level == pytest.approx(0.05 / 2) and found[2].interval.low > 0  # 95% alone would have said so
    for r in found[:2]:
        assert r.adjusted.high < 0 and r.family_size == 4


def test_the_sentence_is_made_from_the_numbers():
    # d = -1, -2, -3: mean -2.00, 95% half-width t_{0.975,2} / sqrt(3) = 2.484, p = 0.074
    (found,) = judge_claims([claim("lower")], [[-1.0, -2.0, -3.0]])
    assert claim_sentence(found, label="loss-BWT") == (
        "mhmoe-full vs loramoe-full, loss-BWT (predicted lower): -2.00 [-4.48, 0.48] "
        "(p 0.074, Holm-adjusted 0.074, 3 seeds, sign agrees 3/3): not resolved"
    )
    # d = +-0.1 twice: mean 0, standard error 0.0577; "differ" p 1, TOST p 2.1e-4 ranks first of two (level
    # 0.025, so its interval is the 95% one: t_{0.975,3} 3.182 x 0.0577 = 0.184), adjusted 2 x 2.1e-4
    (found,) = judge_claims([claim("higher", margin=1.0)], [[0.1, -0.1, 0.1, -0.1]])
    assert claim_sentence(found) == (
        "mhmoe-full vs loramoe-full, loss_bwt (predicted higher): 0.00 [-0.18, 0.18] "
        "(p 1.000, Holm-adjusted 1.000, 4 seeds, sign agrees 2/4): "
        "equivalent within ±1 (95.0% interval [-0.18, 0.18], TOST Holm-adjusted < 0.001)"
    )
