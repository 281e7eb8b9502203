"""A checkpoint's hashes catch corruption, not tampering: every field of state.json and LATEST is checked before
use, and a checkpoint written by another run (another seed, model or settings) is refused, each with one line
naming the file and the field, and exit code 2, before anything trains or is written."""

import hashlib
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_resume import kill_run_at
from tiny_runs import tiny_run

from mhmoe.cli import main

SETTINGS = [*tiny_run(["Stance-Policy", "Arithmetic"], test=4, steps=4), "train.checkpoint_every=1", "methods=[lora]"]


def _state_path(run_dir):
    root = run_dir / "checkpoints"
    return root / (root / "LATEST").read_text().strip() / "state.json"


def _edit_state(run_dir, edit):
    path = _state_path(run_dir)
    state = json.loads(path.read_text())
    edit(state)
    path.write_text(json.dumps(state))


def _reshape_adapter(run_dir):
    """The adapter's first tensor saved with another shape, its hash updated so only the shape check can tell."""
    path = _state_path(run_dir).parent / "adapter.safetensors"
    tensors = load_file(path)
    first = sorted(tensors)[0]
    tensors[first] = torch.zeros(3, 3)
    save_file(tensors, path)
    _edit_state(run_dir, lambda s: s["files"].update({path.name: hashlib.sha256(path.read_bytes()).hexdigest()}))


# (case, how the killed run's folder is changed, words the one-line error must hold)
TAMPERED = [
    ("LATEST outside the run", lambda d: (d / "checkpoints" / "LATEST").write_text("../../../etc\n"), "six digits"),
    ("LATEST names nothing", lambda d: (d / "checkpoints" / "LATEST").write_text("000999\n"), "does not exist"),
    ("negative step", lambda d: _edit_state(d, lambda s: s["position"].update(step=-5)), "'step' is -5"),
    ("step as text", lambda d: _edit_state(d, lambda s: s["position"].update(step="3")), "'step' is '3'"),
    ("step past the task", lambda d: _edit_state(d, lambda s: s["position"].update(step=99)), "outside"),
    ("task past the stream", lambda d: _edit_state(d, lambda s: s["position"].update(task=7)), "outside"),
    ("method past the entries", lambda d: _edit_state(d, lambda s: s["position"].update(method=99)), "entries"),
    ("metrics length 1e12", lambda d: _edit_state(d, lambda s: s.update(metrics_bytes=10**12)), "past the end"),
    ("results missing", lambda d: _edit_state(d, lambda s: s.pop("results")), "'results' is missing"),
    ("a file it may not hold", lambda d: _edit_state(d, lambda s: s["files"].update({"../x": "0"})), "'files'"),
    ("position incomplete", lambda d: _edit_state(d, lambda s: s["position"].pop("task")), "'position'"),
    ("state.json a list", lambda d: _state_path(d).write_text("[]"), "not a JSON object"),
    ("another seed's checkpoint", lambda d: _edit_state(d, lambda s: s["owner"].update(seed=1)), "another run"),
    ("another model's checkpoint", lambda d: _edit_state(d, lambda s: s["owner"].update(model="x")), "another run"),
    ("a tensor of another shape", _reshape_adapter, "names or shapes"),
]


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A run killed in its first task's third step, with a mid-task checkpoint."""
    return kill_run_at(SETTINGS, tmp_path_factory.mktemp("killed"), 3)


@pytest.mark.parametrize(("case", "tamper", "words"), TAMPERED, ids=[c for c, *_ in TAMPERED])
def test_a_tampered_checkpoint_is_refused_in_one_line(case, tamper, words, killed, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(killed, run_dir)
    tamper(run_dir)
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    assert main(["run", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("mhmoe: error: ") and words in err, err
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before  # nothing written or removed


def test_the_untampered_copy_resumes(killed, tmp_path):
    """The control: the same copy, unchanged, resumes and finishes (so the refusals above are the tampering's)."""
    run_dir = tmp_path / "run"
    shutil.copytree(killed, run_dir)
    assert main(["run", "--resume", str(run_dir)]) == 0
    assert json.loads((run_dir / "results.json").read_text())["complete"]
