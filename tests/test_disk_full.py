"""A full disk mid-run is one line naming the file and the reason, exit code 2, and the run resumes from the
checkpoint it kept once there is space again."""

import errno
import json

from tiny_runs import tiny_run

import mhmoe.cl.checkpoint as checkpoint
from mhmoe.cli import main

SETTINGS = [*tiny_run(["Stance-Policy", "Arithmetic"], test=4, steps=4), "train.checkpoint_every=1", "methods=[lora]"]


def test_a_full_disk_is_one_line_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    calls, original = [0], checkpoint.save_file

    def filling(tensors, path, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return original(tensors, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", filling)
    args = ["run", "--name", "full", *[f"--set={s}" for s in [*SETTINGS, f"output_dir={tmp_path}"]]]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "No space left on device" in err and "adapter.safetensors" in err, err
    assert "Traceback" not in err and "--resume" in err
    monkeypatch.setattr(checkpoint, "save_file", original)
    assert main(["run", "--resume", str(tmp_path / "full")]) == 0
    assert json.loads((tmp_path / "full" / "results.json").read_text())["complete"]


def test_an_output_dir_that_cannot_be_written_is_refused_before_the_model_loads(tmp_path, monkeypatch, capsys):
    import mhmoe.cl.plan as plan

    monkeypatch.setattr(plan.os, "access", lambda path, mode: False)  # tests may run as root, whom nothing stops
    monkeypatch.setattr("mhmoe.cl.run.load_model", lambda *a: (_ for _ in ()).throw(AssertionError("loaded")))
    args = ["run", "--name", "ro", *[f"--set={s}" for s in [*SETTINGS, f"output_dir={tmp_path / 'out'}"]]]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mhmoe: error: {tmp_path}: cannot be written; choose another output_dir (--set output_dir=...)"
