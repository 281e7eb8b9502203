"""The one change a resume may make: `--resume RUN --add-seeds S` extends a multi-seed run with more seeds of the
same settings, records them in the run folder, and leaves the seeds already run untouched; anything else a
resume could change is refused."""

import json
import shutil

import pytest
from tiny_runs import tiny_run

from mhmoe.cli import main

SETTINGS = [*tiny_run(["Stance-Policy", "QA-Choice"], test=4, steps=2), "methods=[lora]"]


def _run(out, name, seeds):
    args = ["run", "--name", name, "--seeds", seeds, *[f"--set={s}" for s in [*SETTINGS, f"output_dir={out}"]]]
    assert main(args) == 0
    return out / name


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("runs"), "two", "0,1")


def test_added_seeds_run_and_the_summary_covers_all(two_seeds, tmp_path):
    run_dir = tmp_path / "two"
    shutil.copytree(two_seeds, run_dir)
    seed0 = (run_dir / "seed-0" / "results.json").read_text()
    assert main(["run", "--resume", str(run_dir), "--add-seeds", "2"]) == 0
    top = json.loads((run_dir / "results.json").read_text())
    assert top["seeds"] == [0, 1, 2] and set(top["per_seed"]) == {"0", "1", "2"}
    assert json.loads((run_dir / "added_seeds.json").read_text()) == [2]
    assert (run_dir / "seed-0" / "results.json").read_text() == seed0  # not run again
    alone = _run(tmp_path / "alone", "three", "0,1,2")  # the same seed in a run that planned it from the start
    assert (
        top["per_seed"]["2"]["methods"]["lora"]["R"]
        == json.loads((alone / "results.json").read_text())["per_seed"]["2"]["methods"]["lora"]["R"]
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--add-seeds", "1"], "already in the run"),
        (["--add-seeds", "4,4"], "already in the run"),
        (["--add-seeds", "two"], "comma-separated list of integers"),
    ],
)
def test_bad_added_seeds_are_one_line(two_seeds, tmp_path, capsys, args, words):
    run_dir = tmp_path / "two"
    shutil.copytree(two_seeds, run_dir)
    assert main(["run", "--resume", str(run_dir), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and words in err, err
    assert not (run_dir / "added_seeds.json").exists()


def test_a_one_seed_run_or_a_fresh_run_takes_no_added_seeds(tmp_path, capsys):
    one = _run(tmp_path, "one", "0")
    assert main(["run", "--resume", str(one), "--add-seeds", "1"]) == 2
    assert "one-seed run's folder is that seed's run" in capsys.readouterr().err
    assert main(["run", "--add-seeds", "1", *[f"--set={s}" for s in SETTINGS]]) == 2
    assert "give it with --resume" in capsys.readouterr().err


def test_seeds_are_added_to_every_order_of_a_run_over_orders(tmp_path):
    orders = "orders={f: [Stance-Policy, QA-Choice], b: [QA-Choice, Stance-Policy]}"
    args = ["run", "--name", "orders", "--seeds", "0,1", *[f"--set={s}" for s in [*SETTINGS, orders]]]
    assert main([*args, f"--set=output_dir={tmp_path}"]) == 0
    assert main(["run", "--resume", str(tmp_path / "orders"), "--add-seeds", "2"]) == 0
    for order in ("f", "b"):
        summary = json.loads((tmp_path / "orders" / order / "results.json").read_text())
        assert summary["seeds"] == [0, 1, 2], order


def test_seeds_are_not_recorded_for_a_run_whose_settings_were_edited(two_seeds, tmp_path, capsys):
    run_dir = tmp_path / "two"
    shutil.copytree(two_seeds, run_dir)
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.01", "lr: 0.02"))
    assert main(["run", "--resume", str(run_dir), "--add-seeds", "2"]) == 2
    assert "other settings or code" in capsys.readouterr().err
    assert not (run_dir / "added_seeds.json").exists()
