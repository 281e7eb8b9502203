"""A whole continual-learning run on a tiny model: the run folder, R and its metrics, saved adapters, the CLI."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_runs import tiny_run

from mhmoe.cl.evaluate_adapter import evaluate_adapter
from mhmoe.cl.run import run
from mhmoe.cli import main
from mhmoe.config import load_config
from mhmoe.data.trace import DataError, load_stream
from mhmoe.errors import ConfigError
from mhmoe.metrics import bwt, fwt, loss_bwt, op

TASKS = ["Stance-Policy", "Arithmetic", "QA-Choice"]
TINY = tiny_run(TASKS)


def tiny_config(output_dir, *extra):
    return load_config(None, [*TINY, f"output_dir={output_dir}", *extra])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = run(tiny_config(tmp_path_factory.mktemp("runs"), "name=tiny", "log_with=[tensorboard]"))
    return run_dir, json.loads((run_dir / "results.json").read_text())


def test_results_hold_R_with_its_metrics(finished_run):
    _, results = finished_run
    assert results["tasks"] == TASKS and len(results["base"]) == 3
    assert list(results["methods"]) == ["lora", "loramoe", "mhmoe"]
    for m in results["methods"].values():
        R = m["R"]
        assert len(R) == 3 and all(len(row) == 3 and all(0 <= s <= 100 for s in row) for row in R)
        assert (m["op"], m["bwt"], m["fwt"]) == (op(R), bwt(R), fwt(R, results["base"]))
        assert len(m["R_se"]) == 3 and all(0 <= e <= 50 for row in m["R_se"] for e in row)
        assert len(m["L"]) == 3 and all(v > 0 for row in m["L"] for v in row) and m["loss_bwt"] == loss_bwt(m["L"])
    assert len(results["base_se"]) == 3 and len(results["base_L"]) == 3
    # Always giving the most common of 6 test answers gets at least 1 of them right.
    assert len(results["majority"]) == 3 and all(100 / 6 - 1e-9 <= v <= 100 for v in results["majority"])


def test_methods_are_compared_at_matched_activated_parameters(finished_run):
    _, results = finished_run
    activated = [m["parameters"]["activated"] for m in results["methods"].values()]
    assert max(activated) / min(activated) < 1.05
    lora = results["methods"]["lora"]["adapter"]
    assert lora["rank"] > 8 and lora["alpha"] / lora["rank"] == 2.0  # matched rank, the kind's own alpha/rank


def test_run_folder_has_config_metrics_report_picture_and_adapters(finished_run):
    run_dir, results = finished_run
    assert load_config(run_dir / "config.yaml").train.max_steps == 3
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["event"] == "train" for r in records) == 3 * 3 * 3  # methods x tasks x steps
    assert sum(r["event"] == "eval" for r in records) == 1 + 3 * 3  # the untrained row, then one per task
    report = (run_dir / "report.md").read_text()
    assert "| method | activated params |" in report and "![R matrices](R.png)" in report
    assert "| L[i][j] |" in report and "R[i][j] ± se" in report and (run_dir / "L.png").is_file()
    assert "**mhmoe**" in report and f"OP {results['methods']['mhmoe']['op']:.1f}" in report
    assert (run_dir / "R.png").read_bytes()[:4] == b"\x89PNG"
    for method in results["methods"]:
        for i, task in enumerate(TASKS, start=1):
            assert (run_dir / "adapters" / method / f"{i}-{task}" / "adapter_model.safetensors").is_file()
    assert list((run_dir / "tracking").rglob("events.out.tfevents.*"))  # TensorBoard through Accelerate


def test_a_saved_adapter_scores_exactly_its_row_of_R(finished_run):
    run_dir, results = finished_run
    names, row = evaluate_adapter(run_dir / "adapters" / "mhmoe" / "3-QA-Choice")
    mhmoe = results["methods"]["mhmoe"]
    assert names == TASKS and row.scores == mhmoe["R"][-1] and row.errors == mhmoe["R_se"][-1]
    assert row.losses == pytest.approx(mhmoe["L"][-1], rel=1e-6)


def test_router_facts_of_the_default_moe_configuration(finished_run):
    """Top-1, gate 'selected', no balance loss: the routers get exactly zero gradient, and the report says so."""
    run_dir, results = finished_run
    for name in ("loramoe", "mhmoe"):
        router = results["methods"][name]["router"]
        assert router["fixed_by_design"] and not any(router["trained"].values())
        for layer in router["load"].values():
            assert all(abs(sum(head) - 1) < 1e-6 for head in layer["share"])
            assert all(0 <= e <= 1 + 1e-6 for e in layer["entropy"])
    assert results["methods"]["lora"]["router"] is None
    assert "receive no gradient" in (run_dir / "report.md").read_text()


def test_same_seed_gives_the_same_R(finished_run, tmp_path):
    _, results = finished_run
    again = run(tiny_config(tmp_path, "methods=[mhmoe]", "name=again"))
    assert (
        json.loads((again / "results.json").read_text())["methods"]["mhmoe"]["R"] == results["methods"]["mhmoe"]["R"]
    )


def test_a_used_run_folder_is_refused(finished_run):
    run_dir, _ = finished_run
    with pytest.raises(ConfigError, match="run folder exists and is not empty"):
        run(tiny_config(run_dir.parent, "name=tiny"))


def test_bad_data_stops_the_run_before_anything_is_written(tmp_path):
    data = tmp_path / "data" / "Stance-Policy"
    data.mkdir(parents=True)
    for split in ("train", "eval", "test"):
        (data / f"{split}.json").write_text('[{"prompt": "p", "answer": "A"}]')
    (data / "test.json").write_text('[{"prompt": "p"}]')
    (data / "task.json").write_text('{"scorer": "accuracy"}')
    config = tiny_config(tmp_path / "runs", "data.benchmark=trace", f"data.data_dir={tmp_path / 'data'}")
    config.data.order = ["Stance-Policy"]
    with pytest.raises(DataError, match=r"test\.json: record 0 has no 'answer' field"):
        run(config)
    assert not (tmp_path / "runs").exists()


def test_cli_runs_and_prints_the_comparison(tmp_path, capsys):
    args = [f"--set={o}" for o in TINY] + [f"--set=output_dir={tmp_path}", "--methods", "lora,mhmoe", "--name", "c"]
    assert main(["run", *args]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| method | activated params |") and "| mhmoe |" in out and "run folder:" in out
    assert main(["eval", str(tmp_path / "c" / "adapters" / "lora" / "1-Stance-Policy")]) == 0
    assert "Stance-Policy" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["run", "--set", "train.lr=-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mhmoe: error:") and "field 'lr'" in err and err.count("\n") == 1
    assert main(["eval", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


FIXTURE = Path(__file__).parent / "fixtures" / "trace"


def test_trace_folders_get_trace_scorers():
    tasks = load_stream(FIXTURE, ["C-STANCE", "ScienceQA", "Py150", "20Minuten"])
    assert [t.scorer for t in tasks] == ["accuracy", "first_char", "py150_similarity", "sari"]
    assert tasks[0].split("test")[0].answer == "A" and "支持" in tasks[0].split("test")[0].prompt


def test_cli_runs_a_local_trace_folder_end_to_end(tmp_path, capsys):
    order = "data.order=[C-STANCE, ScienceQA, Py150, 20Minuten]"
    args = ["--benchmark", "trace", "--data-dir", str(FIXTURE), "--model", "tiny:llama", "--methods", "mhmoe"]
    # a random model never stops, and TRACE's tasks generate up to 512 tokens: cap it
    sets = [order, "train.max_steps=2", "eval.max_new_tokens=8", "progress=false", f"output_dir={tmp_path}"]
    assert main(["run", *args, *(f"--set={s}" for s in sets), "--name", "trace"]) == 0
    results = json.loads((tmp_path / "trace" / "results.json").read_text())
    assert results["tasks"] == ["C-STANCE", "ScienceQA", "Py150", "20Minuten"]
    assert len(results["methods"]["mhmoe"]["R"]) == 4
    assert "| mhmoe |" in capsys.readouterr().out


def test_every_baseline_runs_in_the_same_loop_at_matched_parameters(tmp_path):
    methods = ["seqlora", "ewc", "gem", "olora", "replay", "loramoe", "mhmoe"]
    options = [
        "method_options.ewc.fisher_examples=4",
        "method_options.gem.memory_per_task=4",
        "method_options.replay.memory_per_task=4",
    ]
    config = tiny_config(tmp_path, f"methods=[{', '.join(methods)}]", *options, "name=all")
    run_dir = run(config)
    results = json.loads((run_dir / "results.json").read_text())
    assert list(results["methods"]) == methods
    assert all(len(m["R"]) == 3 for m in results["methods"].values())
    olora = results["methods"]["olora"]
    assert olora["adapter"]["kind"] == "olora" and olora["adapter"]["tasks"] == 3
    activated = [m["parameters"]["activated"] for m in results["methods"].values()]
    assert max(activated) / min(activated) < 1.1
    # O-LoRA freezes a task's LoRA once the task is over: task 1's pair is the same after task 3.
    first = load_file(run_dir / "adapters" / "olora" / "1-Stance-Policy" / "adapter_model.safetensors")
    last = load_file(run_dir / "adapters" / "olora" / "3-QA-Choice" / "adapter_model.safetensors")
    task_1 = [n for n in first if n.endswith(("adapter_A_0", "adapter_B_0"))]
    assert task_1 and all(torch.equal(first[n], last[n]) for n in task_1)
    assert any(not torch.equal(first[n], last[n]) for n in last if n.endswith("adapter_B_2"))
    assert "| olora |" in (run_dir / "report.md").read_text()
