"""The run machinery reproduces, bit for bit, what it produced when tests/fixtures/golden.json was recorded:
every run shape (boundaries, task-free, orders, variants, modes, two seeds), a run killed and resumed,
`mhmoe eval` and `mhmoe analyze` (see tests/golden_runs.py)."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml
from golden_runs import FIXTURE, SHAPES, analysis_outputs, eval_outputs, outputs, run_shape
from test_resume import KILLER

from mhmoe.cl.checkpoint import Position, load_checkpoint
from mhmoe.cli import main
from mhmoe.config import load_config

GOLDEN = json.loads(FIXTURE.read_text(encoding="utf-8"))


def canonical(value) -> str:
    """JSON text with sorted keys: NaN and -0.0 compare as written, floats at full precision."""
    return json.dumps(value, sort_keys=True)


def assert_same(actual: dict, expected: dict, where: str) -> None:
    assert sorted(actual) == sorted(expected), f"{where}: {sorted(actual)} != {sorted(expected)}"
    for key in expected:
        if isinstance(expected[key], dict) and isinstance(actual[key], dict):
            assert_same(actual[key], expected[key], f"{where}/{key}")
        else:
            assert canonical(actual[key]) == canonical(expected[key]), f"{where}/{key} differs from the golden output"


@pytest.fixture(autouse=True)
def one_thread():
    """The golden outputs were recorded on one thread: float reduction order is part of a result."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("golden")


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_run_shape_reproduces_its_golden_outputs(runs, shape):
    assert_same(outputs(run_shape(shape, runs)), GOLDEN[shape], shape)


def test_eval_and_analyze_reproduce_their_golden_outputs(runs):
    run_dir = runs / "boundaries"
    if not run_dir.is_dir():
        run_shape("boundaries", runs)
    assert_same(eval_outputs(run_dir), GOLDEN["eval"], "eval")
    assert_same(analysis_outputs(run_dir), GOLDEN["analyze"], "analyze")


def test_a_killed_and_resumed_run_reproduces_the_golden_outputs(tmp_path):
    config = load_config(None, [*SHAPES["boundaries"], f"output_dir={tmp_path}", "name=boundaries"])
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the 21st answer loss: the fourth method (ewc), its first task's third step, after a mid-task checkpoint
    args = [sys.executable, "-c", KILLER, "mhmoe.cl.train", "answer_loss", "21", str(path)]
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert load_checkpoint(tmp_path / "boundaries").position == Position(3, 0, 2)
    assert main(["run", "--resume", str(tmp_path / "boundaries")]) == 0
    assert_same(outputs(tmp_path / "boundaries"), GOLDEN["boundaries"], "resumed")
