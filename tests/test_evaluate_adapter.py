"""`mhmoe eval` on a saved adapter scores it exactly as the run did: the same stream, model and seed (the seed
draws the bootstrap of the standard errors), also for an adapter inside a multi-seed run's seed-<s>/ folder."""

import json

import pytest
from tiny_runs import tiny_run

from mhmoe.cl.evaluate_adapter import evaluate_adapter
from mhmoe.cl.run import run
from mhmoe.config import load_config

TASKS = ["Stance-Policy", "Py-NextLine"]  # Py-NextLine's similarity scores have a bootstrap standard error
TINY = [*tiny_run(TASKS, train=8, test=12, steps=2), "methods=[mhmoe]"]


def _assert_last_row(run_dir, results):
    names, row = evaluate_adapter(run_dir / "adapters" / "mhmoe" / "2-Py-NextLine")
    mhmoe = results["methods"]["mhmoe"]
    assert mhmoe["R_se"][-1][1] > 0  # a bootstrap error, which the seed draws
    assert names == TASKS and row.scores == mhmoe["R"][-1] and row.errors == mhmoe["R_se"][-1]
    assert row.losses == pytest.approx(mhmoe["L"][-1], rel=1e-6)


def test_an_adapter_of_a_run_with_seed_1_scores_exactly_its_row_of_R(tmp_path):
    run_dir = run(load_config(None, [*TINY, "seed=1", f"output_dir={tmp_path}", "name=one"]))
    results = json.loads((run_dir / "results.json").read_text())
    _assert_last_row(run_dir, results)


def test_an_adapter_inside_a_seed_folder_is_scored_with_that_seed(tmp_path):
    run_dir = run(load_config(None, [*TINY, "seeds=[1, 2]", f"output_dir={tmp_path}", "name=many"]))
    for seed in (1, 2):
        folder = run_dir / f"seed-{seed}"
        _assert_last_row(folder, json.loads((folder / "results.json").read_text()))
