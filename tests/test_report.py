"""The report's tables and verdicts from a hand-made result."""

from mhmoe.cl.evaluate import majority_answer_score
from mhmoe.cl.report import (
    comparison_table,
    learned_tasks,
    learning_floor,
    loss_matrix_table,
    r_matrix_table,
    router_lines,
    verdicts,
)
from mhmoe.data.trace import Example, Task
from mhmoe.metrics import bwt, fwt, loss_bwt, op

R = [[90.0, 10.0], [40.0, 80.0]]
L = [[0.5, 3.0], [1.25, 0.25]]
BASE = [20.0, 78.0]
RESULTS = {
    "tasks": ["T1", "T2"],
    "base": BASE,
    "base_se": [4.0, 4.1],
    "base_L": [4.0, 3.5],
    "methods": {
        "lora": {
            "R": R,
            "R_se": [[3.0, 3.04], [4.9, 4.0]],
            "L": L,
            "op": op(R),
            "bwt": bwt(R),
            "fwt": fwt(R, BASE),
            "loss_bwt": loss_bwt(L),
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


def _task(scorer: str, answers: list[str]) -> Task:
    return Task("T", scorer, 4, {"test": [Example(f"q{i}", a) for i, a in enumerate(answers)]})


def test_majority_answer_scores_the_most_common_answer_with_the_tasks_scorer():
    assert majority_answer_score(_task("accuracy", ["B", "A", "B", "C", "B", "D"])) == 50.0  # B: 3 of 6
    assert majority_answer_score(_task("accuracy", ["A", "B", "C", "D"])) == 25.0  # a tie: the first, 1 of 4
    assert majority_answer_score(_task("accuracy", [])) == 0.0


def test_a_task_at_its_majority_answer_is_not_learned_even_far_above_untrained():
    # Untrained scores 0 (it ignores the format); always answering "B" scores 30; training reached 32 on T2.
    results = {**RESULTS, "base": [0.0, 0.0], "majority": [30.0, 30.0]}
    lora = {**RESULTS["methods"]["lora"], "R": [[90.0, 10.0], [40.0, 32.0]]}
    results["methods"] = {"lora": lora}
    assert learning_floor(results) == [30.0, 30.0]
    assert learning_floor({**results, "base": [35.0, 0.0]}) == [35.0, 30.0]
    assert learning_floor({k: v for k, v in results.items() if k != "majority"}) == [0.0, 0.0]
    assert learned_tasks(lora, learning_floor(results)) == [True, False]
    (line,) = verdicts(results)
    assert "did not clearly learn T2" in line and "above untrained or the most common answer: T1 30->90" in line
    rows = r_matrix_table(lora, results["tasks"], results["base"], results["base_se"], results["majority"])
    assert rows.splitlines()[3] == "| most common answer | 30.0 | 30.0 |"


def test_tables_hold_the_final_row_and_every_row():
    table = comparison_table(RESULTS).splitlines()
    assert table[0] == "| method | activated params | total params | T1 | T2 | OP | BWT | loss-BWT |"
    assert table[2] == "| untrained | 0 | 0 | 20.0 | 78.0 | 49.0 | - | - |"
    assert table[3] == "| lora | 1,234 | 5,678 | 40.0 | 80.0 | 60.0 | -50.0 | +0.750 |"  # 1.25 - 0.5
    rows = r_matrix_table(RESULTS["methods"]["lora"], RESULTS["tasks"], BASE, RESULTS["base_se"], None).splitlines()
    assert rows[2:] == [
        "| untrained | 20.0 ± 4.0 | 78.0 ± 4.1 |",
        "| after 1 T1 | 90.0 ± 3.0 | 10.0 ± 3.0 |",
        "| after 2 T2 | 40.0 ± 4.9 | 80.0 ± 4.0 |",
    ]
    rows = loss_matrix_table(RESULTS["methods"]["lora"], RESULTS["tasks"], RESULTS["base_L"]).splitlines()
    assert rows[2:] == [
        "| untrained | 4.000 | 3.500 |",
        "| after 1 T1 | 0.500 | 3.000 |",
        "| after 2 T2 | 1.250 | 0.250 |",
    ]


def test_router_facts_say_when_routers_cannot_train():
    router = {
        "fixed_by_design": True,
        "trained": {"a": False, "b": False},
        "load": {
            "a": {"share": [[0.5, 0.5], [1.0, 0.0]], "entropy": [1.0, 0.0]},
            "b": {"share": [[0.75, 0.25]], "entropy": [0.81]},
        },
    }
    (line,) = router_lines("mhmoe", router)
    assert "received gradient in 0 of 2 MoE layers" in line and "receive no gradient" in line
    assert "min 0.00, mean 0.60" in line and "100% of a head's tokens at most, 75% on average" in line
    assert router_lines("lora", None) == []
