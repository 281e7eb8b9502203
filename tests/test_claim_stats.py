"""Declared claims: Holm's adjustment by hand, t and TOST verdicts on planted differences, the generated sentence, and
the group-sequential procedure's error rate under optional stopping, simulated."""

import math

import numpy as np
import pytest
from scipy import stats

from mhmoe.claims_spec import Claim
from mhmoe.errors import ConfigError
from mhmoe.metrics.claims import claim_sentence, holm, holm_levels, judge_claims, tost_p, two_sided_p
from mhmoe.metrics.sequential import (
    SEED,
    obf_spending,
    sequential_decision,
    sequential_family,
    sequential_sentence,
    t_boundaries,
    t_paths,
)

ALPHA = 0.05
LOOKS = tuple(range(3, 11))  # a start of 3 seeds, then one seed per group, up to 10


def claim(direction="lower", *, margin=None, primary=True, metric="loss_bwt", a="mhmoe-full", b="loramoe-full"):
    return Claim(metric=metric, a=a, b=b, direction=direction, primary=primary, margin=margin)


def slack(n_sims: int, alpha: float = ALPHA) -> float:
    return 2 * math.sqrt(alpha * (1 - alpha) / n_sims)


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


# --- the group-sequential procedure ---


def test_spending_runs_from_zero_to_alpha():
    spent = obf_spending(np.array([1e-9, 0.3, 0.7, 1.0]), ALPHA)
    assert spent[0] == pytest.approx(0, abs=1e-12) and spent[-1] == pytest.approx(ALPHA)
    assert np.all(np.diff(spent) > 0)


def test_t_paths_match_scipy_at_every_look():
    d = np.random.default_rng(5).normal(1, 2, size=(3, 10))
    found = t_paths(d, LOOKS)
    for row, path in zip(d, found, strict=True):
        assert path == pytest.approx([stats.ttest_1samp(row[:n], 0).statistic for n in LOOKS])
    assert t_paths(np.array([2.0, 2.0, 2.0]), [3])[0] == math.inf and t_paths(np.zeros(3), [3])[0] == 0


def test_boundaries_have_their_size_on_fresh_null_paths_and_fall_as_the_level_rises():
    null = t_paths(np.random.default_rng(SEED + 1).standard_normal((100_000, LOOKS[-1])), LOOKS)
    for level in (ALPHA, ALPHA / 4):
        two = (np.abs(null) >= np.asarray(t_boundaries(LOOKS, level, 2))).any(axis=1).mean()
        one = (null >= np.asarray(t_boundaries(LOOKS, level, 1))).any(axis=1).mean()
        for size in (two, one):
            assert abs(size - level) <= slack(100_000, level)
    levels = [ALPHA / m for m in range(6, 0, -1)]  # every level Holm may use in a family of up to 6 hypotheses
    for sides in (1, 2):
        bounds = np.array([t_boundaries(LOOKS, level, sides) for level in levels])
        assert np.all(np.diff(bounds, axis=0) <= 0)


def _run(decide, d: np.ndarray):
    """What the runner does: look after each planned group until told to stop."""
    for n in LOOKS:
        stop, decision = decide(d[:n])
        if stop:
            return decision


def test_optional_stopping_keeps_the_false_positive_rate_where_naive_retesting_does_not():
    rng = np.random.default_rng(2024)
    n_sims = 2000
    null = rng.normal(0, 3.0, size=(n_sims, LOOKS[-1]))  # any sigma: t is scale-free
    lower = claim("lower")
    found = [_run(lambda d: sequential_decision(lower, d, LOOKS), row) for row in null]
    rate = np.mean([x.resolved for x in found])
    assert rate <= ALPHA + slack(n_sims)
    # a plain t test at every look, stopping at the first p < alpha
    naive = (2 * stats.t.sf(np.abs(t_paths(null, LOOKS)), np.asarray(LOOKS) - 1) < ALPHA).any(axis=1).mean()
    assert naive > ALPHA + slack(n_sims)
    print(f"false-positive rate over {n_sims} null runs: group-sequential {rate:.4f}, naive re-testing {naive:.4f}")


def test_a_planted_effect_is_found_early_and_on_the_predicted_side():
    rng = np.random.default_rng(7)
    effects = -1.5 + rng.normal(0, 1.0, size=(500, LOOKS[-1]))  # a lower than b by 1.5 standard deviations
    found = [_run(lambda d: sequential_decision(claim("lower"), d, LOOKS), row) for row in effects]
    assert np.mean([x.verdict == "supported" for x in found]) > 0.9
    assert not any(x.verdict == "contradicted" for x in found)
    assert np.median([x.n for x in found]) < LOOKS[-1]  # most runs stop before 10 seeds


def test_a_family_keeps_its_error_rate_under_optional_stopping():
    """Two null claims on shared seeds and one whose true difference sits on its margin: any verdict on the null
    claims, or 'within the margin' / 'contradicted' on the third, is an error."""
    rng = np.random.default_rng(11)
    claims = [claim("lower"), claim("higher", metric="op"), claim("higher", metric="bwt", margin=1.0)]
    n_sims, errors = 1000, 0
    for _ in range(n_sims):
        shared = rng.normal(0, 1.0, size=LOOKS[-1])
        d = np.stack([shared + rng.normal(0, 1.0, LOOKS[-1]), shared, 1.0 + rng.normal(0, 0.7, LOOKS[-1])])
        family = next(f for n in LOOKS if (f := sequential_family(claims, d[:, :n], LOOKS)).stop)
        first, second, third = family.decisions
        errors += first.resolved or second.resolved or third.within_margin or third.verdict == "contradicted"
    assert errors / n_sims <= ALPHA + slack(n_sims)


def test_the_family_stops_on_its_primary_claims_and_reports_a_sentence():
    rng = np.random.default_rng(8)
    claims = [claim("lower"), claim("higher", metric="op", primary=False)]
    d = np.stack([-5 + rng.normal(0, 0.5, 10), rng.normal(0, 1.0, 10)])
    family = sequential_family(claims, d[:, :3], LOOKS)
    assert not family.stop and family.decisions[0].boundary > 100  # O'Brien-Fleming: almost nothing spent at 3
    family = next(f for n in LOOKS if (f := sequential_family(claims, d[:, :n], LOOKS)).stop)
    primary, secondary = family.decisions
    assert primary.verdict == "supported" and family.n < 10 and secondary.verdict == "not resolved"
    assert primary.level == pytest.approx(ALPHA / 2) and secondary.level == pytest.approx(ALPHA)  # Holm stepped down
    sentence = sequential_sentence(primary, LOOKS, label="loss-BWT")
    assert sentence.startswith(f"mhmoe-full vs loramoe-full, loss-BWT (predicted lower): {primary.mean:.2f} over ")
    assert "O'Brien-Fleming looks at 3-10 seeds" in sentence and sentence.endswith(f"supported at {family.n} seeds")
    assert sequential_family(claims, d, LOOKS).stop  # the last look always stops


def test_the_family_refuses_unplanned_looks_and_a_family_without_primary_claims():
    d = np.zeros((1, 11))
    with pytest.raises(ValueError, match="not a planned look"):
        sequential_family([claim()], d[:, :11], LOOKS)
    with pytest.raises(ConfigError, match="primary"):
        sequential_family([claim(primary=False)], d[:, :3], LOOKS)
    with pytest.raises(ConfigError, match="'looks'"):
        sequential_family([claim()], d[:, :3], [3, 3, 4])
