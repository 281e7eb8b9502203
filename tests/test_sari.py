"""SARI against values worked out by hand from Xu et al. (2016)'s definition (see metrics/sari.py)."""

import pytest

from mhmoe.metrics.sari import sari_score
from mhmoe.metrics.text import mean_score


def test_one_reference_all_orders_by_hand():
    # I = "a b c", O = "a c d", R = "a c e".
    # n=1: add p 0/1 r 0/1; keep {a, c} kept and due: p 2/2 r 2/2; del {b} deleted and due: 1/1.
    # n=2: I {ab, bc}, O {ac, cd}, R {ac, ce}: add p 1/2 (ac) r 1/2; keep 0/0 = 1 both; del 2/2.
    # n=3: add {acd} vs {ace}: p 0, r 0; keep 1, 1; del 1/1.   n=4: nothing anywhere: every ratio 0/0 = 1.
    # P_add = R_add = (0 + 1/2 + 0 + 1) / 4 = 3/8, F_add = 3/8; F_keep = 1; P_del = 1.
    assert sari_score("a b c", "a c d", ["a c e"]) == pytest.approx(100 * (3 / 8 + 1 + 1) / 3)


def test_two_references_use_fractional_keep_and_delete():
    # Unigrams only. I = {x, y, z}, O = {x, y}, references "x y" and "x w": x in 2/2, y in 1/2, z in 0/2.
    # add: nothing added (p 0/0 = 1), w was due (r 0/1 = 0): F_add = 0.
    # keep: min(1, 1) + min(1, 1/2) + min(0, 0) = 1.5; p = 1.5 / 2, r = 1.5 / 1.5: F_keep = 2 * .75 / 1.75 = 6/7.
    # del: only z was deleted, and 0/2 references keep it: p = 1 / 1.
    assert sari_score("x y z", "x y", ["x y", "x w"], max_order=1) == pytest.approx(100 * (0 + 6 / 7 + 1) / 3)


def test_copying_the_source_is_punished_and_matching_the_reference_is_not():
    source, reference = "Der Bundesrat hat heute das neue Gesetz beschlossen .", "Das Gesetz ist beschlossen ."
    assert sari_score(source, reference, [reference]) > sari_score(source, source, [reference])
    assert sari_score(source, reference, [reference]) == pytest.approx(100.0)


def test_mean_score_passes_sources_and_scores_empty_pairs_zero():
    assert mean_score("sari", ["a c d", ""], ["a c e", "x"], ["a b c", "x y"]) == pytest.approx(
        100 * (3 / 8 + 2) / 3 / 2
    )
    with pytest.raises(ValueError, match="needs one source text per answer"):
        mean_score("sari", ["a"], ["a"])
