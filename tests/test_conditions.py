"""Runs repeated over conditions (here task orders): each order is exactly the run of that order alone, the top
report puts them side by side, and a run killed in its second order resumes to the same results."""

import json

import pytest
from test_resume import kill_run_at, train_losses

from mhmoe.cl.conditions import condition_verdicts, summarise_conditions
from mhmoe.cl.run import run
from mhmoe.cli import main
from mhmoe.config import load_config
from mhmoe.errors import MhmoeError

SETTINGS = [
    "model.name=tiny:llama",
    "data.train_size=12",
    "data.test_size=4",
    "train.max_steps=2",
    "train.batch_size=4",
    "train.lr=1e-2",
    "progress=false",
    "methods=[lora, mhmoe]",
    "orders={forward: [Stance-Policy, QA-Choice], backward: [QA-Choice, Stance-Policy]}",
]


@pytest.fixture(scope="module")
def two_orders(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    run_dir = run(load_config(None, [*SETTINGS, f"output_dir={out}", "name=orders", "seeds=[0, 1]"]))
    return run_dir, json.loads((run_dir / "results.json").read_text())


def test_each_order_is_exactly_the_run_of_that_order_alone(two_orders, tmp_path):
    run_dir, results = two_orders
    assert list(results["conditions"]) == ["forward", "backward"]
    assert results["conditions"]["backward"]["tasks"] == ["QA-Choice", "Stance-Policy"]
    alone = run(
        load_config(
            None,
            [
                *SETTINGS[:-1],
                f"output_dir={tmp_path}",
                "name=alone",
                "seeds=[0, 1]",
                "data.order=[QA-Choice, Stance-Policy]",
            ],
        )
    )
    expected = json.loads((alone / "results.json").read_text())
    assert results["conditions"]["backward"]["summary"] == expected["summary"]
    for seed in ("0", "1"):
        assert train_losses(run_dir / "backward" / f"seed-{seed}") == train_losses(alone / f"seed-{seed}")


def test_the_top_report_sets_the_orders_side_by_side(two_orders):
    run_dir, results = two_orders
    report = (run_dir / "report.md").read_text()
    assert "| order | method | OP | BWT | loss-BWT |" in report and "| backward | mhmoe |" in report
    assert "| forward | mhmoe - lora |" in report and "[backward](backward/report.md)" in report
    assert (run_dir / "conditions.png").read_bytes()[:4] == b"\x89PNG"
    for order in ("forward", "backward"):
        assert (run_dir / order / "report.md").is_file() and (run_dir / order / "seed-1" / "report.md").is_file()
    assert results["agreement"]["lora"]["bwt"]["conditions"] == 2


def _order(op_diff_mean, low, high):
    differences = [op_diff_mean - 1.0, op_diff_mean, op_diff_mean + 1.0]
    paired = {"mean": op_diff_mean, "low": low, "high": high, "n": 3, "agreeing": 3, "differences": differences}
    metric = {"mean": 0.0, "low": None, "high": None, "n": 3}
    summary = dict.fromkeys(("op", "bwt", "loss_bwt"), metric)
    return {
        "tasks": ["A", "B"],
        "seeds": [0, 1, 2],
        "model": "m",
        "summary": {"mhmoe": summary, "lora": summary},
        "paired": {"lora": {"op": paired, "bwt": paired, "loss_bwt": paired}},
    }


def test_agreement_counts_orders_by_sign_and_by_resolved_interval():
    # OP: ahead and resolved, ahead unresolved, behind and resolved; loss-BWT is lower-is-better, so reversed.
    per_order = {"o1": _order(2.0, 1.0, 3.0), "o2": _order(1.0, -1.0, 3.0), "o3": _order(-2.0, -3.0, -1.0)}
    summary = summarise_conditions(per_order, "mhmoe", "order")
    op, loss = summary["agreement"]["lora"]["op"], summary["agreement"]["lora"]["loss_bwt"]
    assert (op["reference_better"], op["resolved_reference_better"], op["resolved_method_better"]) == (2, 1, 1)
    assert (loss["reference_better"], loss["resolved_reference_better"], loss["resolved_method_better"]) == (1, 1, 1)
    # gap changes are per-seed differences of the paired differences: o3 minus o1 is -4 in every seed
    change = summary["gap_change"]["lora"]["o3"]["op"]
    assert change["differences"] == [-4.0, -4.0, -4.0] and change["mean"] == -4.0
    lines = condition_verdicts(summary)
    assert (
        "- OP: mhmoe scores higher (OP) than lora in 2 of 3 orders (resolved in 1; lora resolved ahead in 1)." in lines
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("orders={a: [Stance-Policy, QA-Choice], b: [QA-Choice]}", r"'orders.b' holds other tasks"),
        ("orders={a: [Stance-Policy, Stance-Policy]}", r"'orders.a' must list each task once"),
        ("orders={a/b: [Stance-Policy]}", r"order name 'a/b'"),
        ("orders={a: [Stance-Policy, Nowhere]}", r"Nowhere"),
    ],
)
def test_bad_orders_are_one_line_before_anything_runs(override, message, tmp_path):
    with pytest.raises(MhmoeError, match=message) as err:  # a ConfigError, or a DataError for the task name
        run(load_config(None, [*SETTINGS[:-1], override, f"output_dir={tmp_path}", "name=bad"]))
    assert "\n" not in str(err.value) and not (tmp_path / "bad").exists()


def test_a_run_killed_in_its_second_order_resumes_to_the_same_results(two_orders, tmp_path):
    whole, _ = two_orders
    # 2 seeds x 2 methods x 2 tasks x 2 steps = 16 losses in the first order: call 20 is inside the second
    run_dir = kill_run_at([*SETTINGS, "seeds=[0, 1]"], tmp_path, 20)
    assert (run_dir / "forward" / "report.md").is_file() and not (run_dir / "backward" / "report.md").exists()
    assert main(["run", "--resume", str(run_dir)]) == 0
    expected = json.loads((whole / "results.json").read_text())
    assert json.loads((run_dir / "results.json").read_text())["conditions"] == expected["conditions"]
    for seed in ("0", "1"):
        assert train_losses(run_dir / "backward" / f"seed-{seed}") == train_losses(whole / "backward" / f"seed-{seed}")
