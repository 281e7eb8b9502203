"""Exact resume: a run killed with SIGKILL mid-task, mid-evaluation or mid-checkpoint, then resumed,
ends with the same R and the same training losses as a run never interrupted."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml
from tiny_runs import tiny_run

from mhmoe.cl.checkpoint import Checkpoint, Position, load_checkpoint, save_checkpoint
from mhmoe.cl.run import run
from mhmoe.cli import main
from mhmoe.config import load_config
from mhmoe.errors import CheckpointError

SETTINGS = [
    *tiny_run(["Stance-Policy", "Arithmetic", "Stance-CentralBank"], test=4, steps=4),
    "train.checkpoint_every=2",
    "methods=[replay, ewc, mhmoe]",
    "method_options.replay.memory_per_task=4",
    "method_options.ewc.fisher_examples=4",
]

# Runs `mhmoe run` with one library function replaced by a version that SIGKILLs the process on its n-th call.
KILLER = textwrap.dedent(
    """
    import importlib, os, signal, sys
    from mhmoe.cli import main
    module, name, n = importlib.import_module(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    original, calls = getattr(module, name), [0]
    def killing(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)
    setattr(module, name, killing)
    sys.exit(main(["run", *sys.argv[4:]]))
    """
)


def train_losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["method"], r.get("task"), r["step"], r["loss"]) for r in records if r["event"] == "train"]


TIMINGS = ("elapsed_s", "tokens_per_s", "seconds")


def untimed_records(run_dir):
    """metrics.jsonl without what depends on the clock."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in records]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = run(load_config(None, [*SETTINGS, f"output_dir={tmp_path_factory.mktemp('runs')}", "name=whole"]))
    return json.loads((run_dir / "results.json").read_text()), train_losses(run_dir), untimed_records(run_dir)


def kill_run_at(settings, tmp_path, n, module="mhmoe.cl.train", name="answer_loss"):
    """`mhmoe run` of exactly load_config(None, settings) into tmp_path/killed, SIGKILLed on the n-th call of
    module.name (the settings go through a YAML file, so no preset's defaults slip in)."""
    config = load_config(None, [*settings, f"output_dir={tmp_path}", "name=killed"])
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    done = subprocess.run(
        [sys.executable, "-c", KILLER, module, name, str(n), str(path)], capture_output=True, text=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    return tmp_path / "killed"


def killed_run(tmp_path, module, name, n):
    return kill_run_at(SETTINGS, tmp_path, n, module, name)


@pytest.mark.parametrize(
    ("module", "name", "n"),
    [
        ("mhmoe.cl.train", "answer_loss", 3),  # first method, first task, between checkpoints
        ("mhmoe.cl.train", "answer_loss", 22),  # second method, after a mid-task checkpoint
        ("mhmoe.cl.evaluate", "evaluate_task", 8),  # scoring after the first method's second task
        ("mhmoe.cl.checkpoint", "write_json", 6),  # tensors written, state.json and LATEST not yet
    ],
)
def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(uninterrupted, tmp_path, module, name, n):
    results, losses, records = uninterrupted
    run_dir = killed_run(tmp_path, module, name, n)
    assert not (run_dir / "report.md").exists()
    assert main(["run", "--resume", str(run_dir)]) == 0
    resumed = json.loads((run_dir / "results.json").read_text())
    for method, result in results["methods"].items():
        assert resumed["methods"][method]["R"] == result["R"], method
    assert train_losses(run_dir) == losses  # no step lost or repeated, every loss the same
    assert untimed_records(run_dir) == records  # and every other record, clock aside
    assert not (run_dir / "checkpoints").exists()  # a finished run keeps its results, not its checkpoints


def test_a_run_killed_twice_still_ends_the_same(uninterrupted, tmp_path):
    results, *_ = uninterrupted
    run_dir = killed_run(tmp_path, "mhmoe.cl.train", "answer_loss", 5)
    args = [sys.executable, "-c", KILLER, "mhmoe.cl.train", "answer_loss", "9", "--resume", str(run_dir)]
    assert subprocess.run(args, capture_output=True).returncode == -signal.SIGKILL
    assert main(["run", "--resume", str(run_dir)]) == 0
    resumed = json.loads((run_dir / "results.json").read_text())
    assert {m: r["R"] for m, r in resumed["methods"].items()} == {m: r["R"] for m, r in results["methods"].items()}


def test_resume_refuses_finished_and_foreign_folders(uninterrupted, tmp_path, capsys):
    with pytest.raises(CheckpointError, match="config.yaml: not found"):
        run(resume=tmp_path)
    finished = next(tmp_path.parent.glob("runs*/whole"), None)
    if finished is not None:
        with pytest.raises(CheckpointError, match="nothing to resume \\(the run has finished\\)"):
            run(resume=finished)
    assert main(["run", "--resume", str(tmp_path), "--set", "train.lr=1"]) == 2
    assert "give no CONFIG or overrides" in capsys.readouterr().err


def test_tampered_truncated_or_unsafe_checkpoints_are_refused(tmp_path):
    adapter = {"layer.adapter_A": torch.ones(2, 3)}
    training = {"hooks": {}, "rng": torch.get_rng_state()}
    folder = save_checkpoint(
        tmp_path, Checkpoint(Position(0, 1, 2), {"base": [1.0]}, adapter=adapter, training=training)
    )
    loaded = load_checkpoint(tmp_path)
    assert loaded.position == Position(0, 1, 2) and torch.equal(
        loaded.adapter["layer.adapter_A"], adapter["layer.adapter_A"]
    )

    weights = folder / "adapter.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="adapter.safetensors: missing, truncated or changed"):
        load_checkpoint(tmp_path)
    weights.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="changed since it was written"):
        load_checkpoint(tmp_path)
    weights.write_bytes(good)

    # A training file swapped for a pickle that would run code, with its hash updated to match:
    # torch.load(weights_only=True) refuses it rather than running it.
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"hooks": Exploit()}, folder / "training.pt")
    state = json.loads((folder / "state.json").read_text())
    import hashlib

    state["files"]["training.pt"] = hashlib.sha256((folder / "training.pt").read_bytes()).hexdigest()
    (folder / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        load_checkpoint(tmp_path)
    (folder / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="state.json: unreadable"):
        load_checkpoint(tmp_path)


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    settings = [*SETTINGS, f"output_dir={tmp_path}", "name=nan", "train.lr=1e30", "train.max_grad_norm=null"]
    settings += ["train.checkpoint_every=1", "methods=[lora]"]
    assert main(["run", *[f"--set={s}" for s in settings]]) == 2
    error = capsys.readouterr().err.strip()
    assert "the loss became" in error and "the last good checkpoint is kept" in error and "\n" not in error
    checkpoint = load_checkpoint(tmp_path / "nan")
    assert checkpoint.position.method == 0 and checkpoint.position.step >= 1
    assert all(torch.isfinite(t).all() for t in checkpoint.adapter.values())
