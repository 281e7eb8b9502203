"""Prefix tuning and NoRGa through the one run loop on a tiny model: results, saved adapters that re-score exactly,
frozen earlier prefixes, and the task-identification accuracy in results and report."""

import json

import pytest
import torch
from safetensors.torch import load_file
from tiny_runs import tiny_run

from mhmoe.cl.evaluate_adapter import evaluate_adapter
from mhmoe.cl.run import run
from mhmoe.config import load_config

TASKS = ["Stance-Policy", "Arithmetic"]
TINY = [
    *tiny_run(TASKS),
    "methods=[prefix, norga]",
    "method_options.prefix.prototype_examples=8",
    "method_options.norga.prototype_examples=8",
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    config = load_config(None, [*TINY, f"output_dir={tmp_path_factory.mktemp('runs')}", "name=prefix"])
    run_dir = run(config)
    return run_dir, json.loads((run_dir / "results.json").read_text())


def test_both_methods_fill_R_at_matched_activated_parameters(finished_run):
    _, results = finished_run
    assert list(results["methods"]) == ["prefix", "norga"]
    for name, m in results["methods"].items():
        assert len(m["R"]) == 2 and all(len(row) == 2 for row in m["R"]) and len(m["L"]) == 2
        assert m["adapter"]["kind"] == name and m["adapter"]["tasks"] == 2
        # one task's prefixes (and NoRGa's gates) are all a token sees; every task's are the total
        p = m["parameters"]
        gates = 4 if name == "norga" else 0  # alpha and tau in each of 2 layers
        assert p["total"] - gates == 2 * (p["activated"] - gates)
    prefix, norga = (results["methods"][n]["adapter"]["prefix_length"] for n in ("prefix", "norga"))
    assert prefix == norga > 1  # matched to MH-MoE's default activated parameters


def test_task_identification_is_recorded_per_task_and_reported(finished_run):
    run_dir, results = finished_run
    for m in results["methods"].values():
        first, last = m["identified"]
        assert first[1] is None  # after task 1 task 2 has no prototype, so it cannot be identified
        assert all(0 <= v <= 100 for v in [first[0], *last])
    report = (run_dir / "report.md").read_text()
    assert "## Task identification" in report and "| task identified % |" in report


def test_saved_adapters_hold_every_task_and_keep_finished_prefixes_frozen(finished_run):
    run_dir, _ = finished_run
    for name in ("prefix", "norga"):
        first = load_file(run_dir / "adapters" / name / "1-Stance-Policy" / "adapter_model.safetensors")
        last = load_file(run_dir / "adapters" / name / "2-Arithmetic" / "adapter_model.safetensors")
        task_1 = [n for n in first if n.endswith(("adapter_keys_0", "adapter_values_0"))]
        assert task_1 and all(torch.equal(first[n], last[n]) for n in task_1)
        assert any(not torch.equal(first[n], last[n]) for n in last if n.endswith("adapter_keys_1"))
        prototypes = next(t for n, t in last.items() if n.endswith("adapter_prototype_counts"))
        assert prototypes.tolist() == [8, 8]
        assert [t for n, t in first.items() if n.endswith("adapter_prototype_counts")][0].tolist() == [8, 0]


@pytest.mark.parametrize("name", ["prefix", "norga"])
def test_a_saved_adapter_rescores_its_row_exactly(finished_run, name):
    run_dir, results = finished_run
    names, row = evaluate_adapter(run_dir / "adapters" / name / "2-Arithmetic")
    m = results["methods"][name]
    assert names == TASKS and row.scores == m["R"][-1] and row.errors == m["R_se"][-1]
    assert row.identified == m["identified"][-1]
    assert row.losses == pytest.approx(m["L"][-1], rel=1e-6)


def test_oracle_identity_runs_and_records_no_identification(tmp_path):
    overrides = [*TINY, f"output_dir={tmp_path}", "methods=[norga]", "adapters.norga.identity=oracle", "name=o"]
    results = json.loads((run(load_config(None, overrides)) / "results.json").read_text())
    assert results["methods"]["norga"]["identified"] is None
