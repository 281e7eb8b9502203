"""Runs over several seeds: what a seed changes, bit-exact repetition, the summary over seeds and its verdicts,
and a run killed in its second seed and resumed."""

import json

import pytest
import torch
from test_resume import kill_run_at, train_losses

from mhmoe.adapters import MHMoEConfig
from mhmoe.cl.over_seeds import seed_verdicts, summarise_seeds
from mhmoe.cl.run import fresh_adapter, run
from mhmoe.cl.train import batch_order
from mhmoe.cli import main
from mhmoe.config import load_config
from mhmoe.data.stream import load_tasks
from mhmoe.errors import ConfigError
from mhmoe.inject import adapter_parameters
from mhmoe.models import tiny_model

SETTINGS = [
    "model.name=tiny:llama",
    "data.order=[Stance-Policy, QA-Choice]",
    "data.train_size=12",
    "data.test_size=4",
    "train.max_steps=3",
    "train.batch_size=4",
    "train.lr=1e-2",
    "train.checkpoint_every=2",
    "progress=false",
    "methods=[lora, mhmoe]",
]


def test_a_seed_changes_the_data_the_initialisation_and_the_order():
    settings = load_config(None, SETTINGS).data
    prompts = {s: [e.prompt for e in load_tasks(settings, s)[0].split("train")] for s in (0, 1)}
    assert prompts[0] != prompts[1]
    assert prompts[0] == [e.prompt for e in load_tasks(settings, 0)[0].split("train")]
    assert batch_order(12, 3, 4, seed=0, task_index=0) != batch_order(12, 3, 4, seed=1, task_index=0)
    base = tiny_model()
    first, again, other = (adapter_parameters(fresh_adapter(base, MHMoEConfig(heads=4), s)) for s in (0, 0, 1))
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not torch.equal(
        first[next(n for n in first if "adapter_A" in n)], other[next(n for n in other if "adapter_A" in n)]
    )


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    run_dir = run(load_config(None, [*SETTINGS, f"output_dir={out}", "name=two", "seeds=[0, 1]"]))
    alone = run(load_config(None, [*SETTINGS, f"output_dir={out}", "name=alone", "seed=1"]))
    return run_dir, alone


def test_every_seed_is_a_complete_run_and_one_seed_repeats_bit_exactly(two_seeds):
    run_dir, alone = two_seeds
    results = json.loads((run_dir / "results.json").read_text())
    assert results["seeds"] == [0, 1] and results["reference"] == "mhmoe"
    seed1 = json.loads((run_dir / "seed-1" / "results.json").read_text())
    single = json.loads((alone / "results.json").read_text())
    for name, m in seed1["methods"].items():
        for key in ("R", "R_se", "L", "op", "bwt", "loss_bwt"):
            assert single["methods"][name][key] == m[key], (name, key)
    assert train_losses(alone) == train_losses(run_dir / "seed-1")
    seed0 = results["per_seed"]["0"]
    assert seed0["methods"]["mhmoe"]["L"] != seed1["methods"]["mhmoe"]["L"]
    assert load_config(run_dir / "seed-1" / "config.yaml").seed == 1
    assert (run_dir / "seeds.png").is_file() and (run_dir / "seed-0" / "report.md").is_file()
    report = (run_dir / "report.md").read_text()
    assert "## Paired against mhmoe" in report and "| mhmoe - lora |" in report and "### seed 1" in report


def _per_seed(values):
    """Hand-made per-seed results of two methods; values[method] = [(op, bwt, loss_bwt), ...] per seed."""
    runs = {}
    for seed in range(len(values["mhmoe"])):
        methods = {}
        for method, rows in values.items():
            op, bwt, loss = rows[seed]
            methods[method] = {
                "op": op,
                "bwt": bwt,
                "loss_bwt": loss,
                "fwt": 0.0,
                "R": [[op, op], [op, op]],
                "parameters": {"activated": 10, "total": 40},
            }
        runs[seed] = {"tasks": ["a", "b"], "model": "m", "methods": methods}
    return runs


def test_summary_and_verdicts_follow_the_paired_intervals():
    per_seed = _per_seed(
        {
            "mhmoe": [(60.0, -10.0, 1.0), (62.0, -12.0, 1.2), (61.0, -11.0, 0.9)],
            "loramoe": [(50.0, -10.5, 3.0), (51.0, -13.0, 1.0), (52.0, -10.0, 2.5)],
        }
    )
    results = summarise_seeds(per_seed, "mhmoe")
    assert results["summary"]["mhmoe"]["op"]["mean"] == pytest.approx(61.0)
    paired = results["paired"]["loramoe"]
    assert paired["op"]["differences"] == [10.0, 11.0, 9.0] and paired["op"]["agreeing"] == 3
    lines = seed_verdicts(results)
    op, bwt, loss = (
        next(line for line in lines if line.startswith(f"- {label}:")) for label in ("OP", "BWT", "loss-BWT")
    )
    assert "**mhmoe** scores higher (OP) than loramoe" in op
    assert "not resolved with 3 seeds" in bwt and "sign agrees in" in bwt  # +0.5, +1.0, -1.0
    assert "not resolved with 3 seeds" in loss  # -2.0, +0.2, -1.6
    flipped = summarise_seeds(
        _per_seed({"mhmoe": [(1.0, -20.0, 3.0)] * 2 + [(1.0, -21.0, 3.1)], "loramoe": [(1.0, -5.0, 1.0)] * 3}), "mhmoe"
    )
    assert any("**loramoe** forgets less (accuracy BWT) than mhmoe" in line for line in seed_verdicts(flipped))
    assert any("**loramoe** forgets less (loss-BWT) than mhmoe" in line for line in seed_verdicts(flipped))


def test_a_forgetting_verdict_warns_when_the_methods_learned_the_tasks_unequally():
    per_seed = _per_seed({"mhmoe": [(1.0, -20.0, 3.0)] * 2 + [(1.0, -21.0, 3.1)], "loramoe": [(1.0, -5.0, 1.0)] * 3})
    for seed, one in per_seed.items():
        one["methods"]["mhmoe"] |= {"learned": 100.0 - seed, "learned_loss": 0.01}
        one["methods"]["loramoe"] |= {"learned": 85.0 + seed, "learned_loss": 0.3 + 0.01 * seed}
    lines = seed_verdicts(summarise_seeds(per_seed, "mhmoe"))
    bwt = next(line for line in lines if line.startswith("- BWT:"))
    assert "**loramoe** forgets less (accuracy BWT)" in bwt and "Caution: the two also learned" in bwt
    assert "learned (R[i][i]) difference 13.00 [" in bwt
    loss = next(line for line in lines if line.startswith("- loss-BWT:"))
    assert "Caution" in loss and "learned loss (L[i][i])" in loss
    for one in per_seed.values():  # learned alike: the verdict stands without a caution
        one["methods"]["loramoe"]["learned"] = one["methods"]["mhmoe"]["learned"] + 0.0
    bwt = next(line for line in seed_verdicts(summarise_seeds(per_seed, "mhmoe")) if line.startswith("- BWT:"))
    assert "**loramoe** forgets less" in bwt and "Caution" not in bwt


def test_seed_settings_are_validated():
    with pytest.raises(ConfigError, match="'seeds' repeats a seed"):
        load_config(None, [*SETTINGS, "seeds=[1, 1]"])
    with pytest.raises(ConfigError, match="'compare_to' names 'ewc', which is not a method or variant"):
        load_config(None, [*SETTINGS, "compare_to=ewc"])
    with pytest.raises(ConfigError, match="field 'seeds' must be an integer >= 0"):
        load_config(None, [*SETTINGS, "seeds=[-1]"])


def test_a_run_killed_in_its_second_seed_resumes_to_the_same_results(two_seeds, tmp_path):
    whole, _ = two_seeds
    # lora and mhmoe train 2 tasks x 3 steps on seed 0 (12 losses), so call 16 is inside seed 1's first method
    run_dir = kill_run_at([*SETTINGS, "seeds=[0, 1]"], tmp_path, 16)
    assert (run_dir / "seed-0" / "report.md").is_file() and not (run_dir / "report.md").exists()
    assert main(["run", "--resume", str(run_dir)]) == 0
    expected = json.loads((whole / "results.json").read_text())
    resumed = json.loads((run_dir / "results.json").read_text())
    assert resumed["summary"] == expected["summary"] and resumed["paired"] == expected["paired"]
    for seed in ("0", "1"):
        assert train_losses(run_dir / f"seed-{seed}") == train_losses(whole / f"seed-{seed}")
