"""OP, BWT, FWT on hand-worked matrices, and the text scorers on hand-computed values."""

import pytest

from mhmoe.metrics import bwt, fwt, op
from mhmoe.metrics.text import accuracy, mean_score, rouge_l, similarity

R = [
    [80.0, 10.0, 5.0],
    [60.0, 90.0, 20.0],
    [50.0, 70.0, 85.0],
]


def test_op_bwt_fwt_by_hand():
    assert op(R) == pytest.approx((50 + 70 + 85) / 3)
    assert bwt(R) == pytest.approx(((50 - 80) + (70 - 90)) / 2)  # -25: forgetting is negative
    assert fwt(R, base=[0.0, 5.0, 10.0]) == pytest.approx(((10 - 5) + (20 - 10)) / 2)


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
