"""Two CPU processes (torchrun, gloo) give the same R and losses as one process with the same global batch,
and only the first process writes the run folder."""

import json
import socket
import subprocess
import sys

import pytest
from tiny_runs import tiny_run

from mhmoe.cl.run import run
from mhmoe.config import load_config

SETTINGS = [
    *tiny_run(["Stance-Policy", "Arithmetic", "Stance-CentralBank"]),
    "methods=[lora, gem, mhmoe]",
    "method_options.gem.memory_per_task=4",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one(tmp_path):
    one = run(load_config(None, [*SETTINGS, f"output_dir={tmp_path}", "name=one"]))
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}"]
    args = [
        *launch,
        "-m",
        "mhmoe.cli",
        "run",
        *[f"--set={s}" for s in [*SETTINGS, f"output_dir={tmp_path}", "name=two"]],
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run folder:") == 1  # one process reports
    two = tmp_path / "two"
    a, b = json.loads((one / "results.json").read_text()), json.loads((two / "results.json").read_text())
    assert {m: r["R"] for m, r in a["methods"].items()} == {m: r["R"] for m, r in b["methods"].items()}
    single, double = records(one), records(two)
    assert len(single) == len(double)  # every record written once, by the first process
    losses = [(x["loss"], y["loss"]) for x, y in zip(single, double, strict=True) if x["event"] == "train"]
    assert losses and all(x == pytest.approx(y, rel=1e-5) for x, y in losses)


def test_a_step_that_does_not_split_evenly_is_refused_up_front(tmp_path):
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}"]
    settings = [*SETTINGS, f"output_dir={tmp_path}", "name=odd", "train.batch_size=3"]
    done = subprocess.run(
        [*launch, "-m", "mhmoe.cli", "run", *[f"--set={s}" for s in settings]],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode != 0 and "do not split evenly over 2 processes" in done.stderr
    assert not (tmp_path / "odd").exists()


def test_analysis_split_over_two_processes_matches_one(tmp_path):
    import shutil

    from mhmoe.analysis.analyze import analyze

    settings = [s for s in SETTINGS if not s.startswith(("methods", "method_options"))] + ["methods=[loramoe, mhmoe]"]
    one = run(load_config(None, [*settings, f"output_dir={tmp_path}", "name=one"]))
    two = tmp_path / "two"
    shutil.copytree(one, two)
    small = ["analysis.examples_per_task=8", "analysis.probe_tokens=300", "analysis.gradient_tokens=100"]
    analyze(one, small, progress=False)
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}"]
    done = subprocess.run(
        [*launch, "-m", "mhmoe.cli", "analyze", str(two), *[f"--set={s}" for s in small]],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    a = json.loads((one / "analysis" / "analysis.json").read_text())
    b = json.loads((two / "analysis" / "analysis.json").read_text())
    assert a["tokens"] == b["tokens"] and a["routes"] == b["routes"]
    for layer in a["gradient_cosines"]:
        assert a["gradient_cosines"][layer]["cross"] == pytest.approx(b["gradient_cosines"][layer]["cross"], abs=1e-9)
    assert a["probes"] == b["probes"]
