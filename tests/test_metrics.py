"""OP, BWT, FWT on hand-worked matrices, and the text scorers on hand-computed values."""

import pytest

from mhmoe.metrics import bwt, fwt, op
from mhmoe.metrics.text import (
    accuracy,
    accuracy_exact,
    first_char,
    mean_score,
    py150_literals,
    py150_similarity,
    rouge_l,
    similarity,
)

R = [
    [80.0, 10.0, 5.0],
    [60.0, 90.0, 20.0],
    [50.0, 70.0, 85.0],
]


def test_op_bwt_fwt_by_hand():
    assert op(R) == pytest.approx((50 + 70 + 85) / 3)
    assert bwt(R) == pytest.approx(((50 - 80) + (70 - 90)) / 2)  # -25: forgetting is negative
    assert fwt(R, base=[0.0, 5.0, 10.0]) == pytest.approx(((10 - 5) + (20 - 10)) / 2)


def test_the_researchs_printed_eq21_is_the_opposite_sign_and_n_minus_1_over_n_the_size():
    from mhmoe.metrics import bwt_eq21

    # eq. 21: 1/3 * ((80 - 50) + (90 - 70) + (85 - 85)) = 50/3, against our -25 = -(3/(3-1)) * 50/3
    assert bwt_eq21(R) == pytest.approx(50 / 3)
    assert bwt_eq21(R) == pytest.approx(-(3 - 1) / 3 * bwt(R))


def test_single_task_and_errors():
    assert op([[42.0]]) == 42.0 and bwt([[42.0]]) == 0.0 and fwt([[42.0]], [1.0]) == 0.0
    with pytest.raises(ValueError, match="empty"):
        op([])
    with pytest.raises(ValueError, match="row 1 has 1 entries, expected 2"):
        bwt([[1.0, 2.0], [3.0]])
    with pytest.raises(ValueError, match="base scores have 2 entries, expected 3"):
        fwt(R, [0.0, 0.0])


def test_scorers_by_hand():
    assert accuracy(" A", "A") == 100.0 and accuracy("B", "A") == 0.0
    # ROUGE-L: LCS("the cat sat", "the cat sat down") = 3; P = 3/3, R = 3/4, F = 2PR/(P+R) = 6/7
    assert rouge_l("the cat sat", "the cat sat down") == pytest.approx(100 * 6 / 7)
    assert rouge_l("", "anything") == 0.0
    # fuzz.ratio = 100 * 2 * matches / (len a + len b): "abcd" vs "abed" -> 2 * 3 / 8
    assert similarity("abcd", "abed") == pytest.approx(75.0)
    assert similarity("", "") == 0.0
    assert mean_score("accuracy", ["A", "B", "C"], ["A", "B", "A"]) == pytest.approx(200 / 3)


def test_accuracy_variants_and_empty_pairs():
    assert (
        accuracy("A", "A ") == 100.0 and accuracy_exact("A", "A ") == 0.0
    )  # the stripped variant forgives whitespace
    assert accuracy_exact("支持", "支持") == 100.0 and accuracy("Zustimmung", "zustimmung") == 0.0  # no case folding
    assert accuracy("", "") == accuracy_exact("", "") == 0.0  # an empty pair counts as 0, as TRACE does


def test_first_char_scores_the_option_letter():
    assert first_char("B. because plants need light", "B") == 100.0
    assert first_char(" C", "B") == 0.0
    assert first_char("", "B") == 0.0  # an empty generation scores 0 instead of crashing
    assert mean_score("first_char", ["A)", "", "D"], ["A", "B", "C"]) == pytest.approx(100 / 3)


def test_py150_placeholders_become_values_before_similarity():
    assert py150_literals("x = <NUM_LIT> + <NUM_LIT:3>") == "x = 0 + 3"
    assert py150_literals("open(<STR_LIT>, <STR_LIT:rb>) + <CHAR_LIT> + <CHAR_LIT:ü>") == "open(, rb) +  + ü"
    # After replacement the prediction "x = 3" matches the reference "x = <NUM_LIT:3>" exactly.
    assert py150_similarity("x = 3", "x = <NUM_LIT:3>") == 100.0
    # "y = 0" vs "x = 0": 4 of 5 characters match in order -> 100 * 2 * 4 / 10
    assert py150_similarity("y = 0", "x = <NUM_LIT>") == pytest.approx(80.0)


def test_rouge_l_on_german_text():
    # rouge-score lowercases and turns every non-[a-z0-9] character into a space, so "läuft" becomes the two
    # tokens "l uft": "der hund l uft" (4) vs "der hund l uft schnell" (5); LCS 4, P = 1, R = 4/5, F = 8/9.
    assert rouge_l("Der Hund läuft", "der Hund läuft schnell") == pytest.approx(100 * 8 / 9)
