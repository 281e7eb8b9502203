"""A run that adds seeds until its declared primary claims resolve (until_resolved)."""

import json

import pytest
from tiny_runs import tiny_run

from mhmoe.cl.claims_report import sequential_judge
from mhmoe.cl.run import run
from mhmoe.config import load_config
from mhmoe.errors import ConfigError

SETTINGS = [
    *tiny_run(["Stance-Policy", "QA-Choice"], test=4, steps=2),
    "methods=[lora]",
    "variants={lora-r2: {method: lora, adapter: {rank: 2}, match: none}}",
    "claims=[{metric: op, a: lora, b: lora-r2, direction: higher}]",
]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["seeds=[0, 1, 2]", "until_resolved=5", "claims=[]"], "needs a primary claim"),
        (["seeds=[0, 1]", "until_resolved=5"], "at least 3 'seeds'"),
        (["seeds=[0, 1, 2]", "until_resolved=3"], "must exceed their count"),
        (["seeds=[0, 1, 2]", "until_resolved=5", "seed_group=0"], "seed_group"),
    ],
)
def test_impossible_sequential_settings_are_one_line(extra, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [*SETTINGS, *extra])


def test_the_looks_are_planned_from_the_first_seeds():
    assert load_config(None, [*SETTINGS, "seeds=[0, 1, 2]", "until_resolved=5"]).looks() == [3, 4, 5]
    assert load_config(None, [*SETTINGS, "seeds=[0, 1, 2]", "until_resolved=6", "seed_group=2"]).looks() == [3, 5, 6]
    assert load_config(None, [*SETTINGS, "seeds=[0, 1, 2]"]).looks() == []


def test_seeds_are_added_until_the_claims_resolve_or_the_budget_is_spent(tmp_path):
    config = load_config(
        None, [*SETTINGS, f"output_dir={tmp_path}", "name=seq", "seeds=[0, 1, 2]", "until_resolved=5"]
    )
    run_dir = run(config)
    results = json.loads((run_dir / "results.json").read_text())
    seeds = results["seeds"]
    assert seeds[:3] == [0, 1, 2] and seeds == list(range(len(seeds))) and len(seeds) in (3, 4, 5)
    per_seed = {int(s): r for s, r in results["per_seed"].items()}
    for look in [n for n in (3, 4) if n < len(seeds)]:  # every earlier look said: go on
        first = {s: per_seed[s] for s in range(look)}
        assert not sequential_judge(config.declared_claims(), first, [3, 4, 5]).stop
    final = sequential_judge(config.declared_claims(), per_seed, [3, 4, 5])
    assert final.stop and (len(seeds) == 5 or all(d.resolved for d in final.decisions))
    assert json.loads((run_dir / "added_seeds.json").read_text()) == seeds[3:] if len(seeds) > 3 else True
    report = (run_dir / "report.md").read_text()
    assert "group-sequential t test" in report and f"{len(seeds)} ran" in report
