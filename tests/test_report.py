"""The report's tables and verdicts from a hand-made result."""

from mhmoe.cl.report import comparison_table, learned_tasks, r_matrix_table, verdicts
from mhmoe.metrics import bwt, fwt, op

R = [[90.0, 10.0], [40.0, 80.0]]
BASE = [20.0, 78.0]
RESULTS = {
    "tasks": ["T1", "T2"],
    "base": BASE,
    "methods": {
        "lora": {
            "R": R,
            "op": op(R),
            "bwt": bwt(R),
            "fwt": fwt(R, BASE),
            "parameters": {"activated": 1234, "total": 5678},
        }
    },
}


def test_learned_needs_the_diagonal_five_points_above_untrained():
    assert learned_tasks(RESULTS["methods"]["lora"], BASE) == [True, False]  # 90 vs 20; 80 vs 78


def test_verdict_sentences_say_what_R_says():
    (line,) = verdicts(RESULTS)
    assert "did not clearly learn T2" in line and "T1 20->90" in line
    assert "forgot 50.0 points on average (BWT -50.0)" in line and "OP 60.0" in line


def test_tables_hold_the_final_row_and_every_row():
    table = comparison_table(RESULTS).splitlines()
    assert table[0] == "| method | activated params | total params | T1 | T2 | OP | BWT |"
    assert table[2] == "| untrained | 0 | 0 | 20.0 | 78.0 | 49.0 | - |"
    assert table[3] == "| lora | 1,234 | 5,678 | 40.0 | 80.0 | 60.0 | -50.0 |"
    rows = r_matrix_table(RESULTS["methods"]["lora"], RESULTS["tasks"], BASE).splitlines()
    assert rows[2:] == ["| untrained | 20.0 | 78.0 |", "| after 1 T1 | 90.0 | 10.0 |", "| after 2 T2 | 40.0 | 80.0 |"]
