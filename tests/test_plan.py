"""The run's plan, its folder and its results files: resolved once, fingerprinted, read back by shape."""

import json

import pytest
import yaml
from tiny_runs import tiny_run

from mhmoe.cl.plan import ConditionsCell, SeedCell, SeedsCell, resolve, start
from mhmoe.cl.results import SCHEMA, ConditionsSummary, RunResults, SeedsSummary, from_dict, read_results
from mhmoe.cl.run_folder import RunFolder
from mhmoe.cli import main
from mhmoe.config import load_config
from mhmoe.errors import CheckpointError, ConfigError, MhmoeError

SETTINGS = [*tiny_run(["Stance-Policy", "QA-Choice"], test=4, steps=2), "methods=[lora]"]


def config_file(tmp_path, *extra):
    """A YAML file holding exactly these settings (no preset's defaults), for the command line."""
    config = load_config(None, [*SETTINGS, f"output_dir={tmp_path}", *extra])
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path


def test_the_plan_is_a_tree_of_cells_with_their_folders(tmp_path):
    single = resolve(load_config(None, [*SETTINGS, f"output_dir={tmp_path}", "name=a", "seeds=[3]"]))
    assert isinstance(single.root, SeedCell) and single.root.config.seed == 3 and single.root.config.seeds == []
    assert single.root.folder.path == tmp_path / "a" and not (tmp_path / "a").exists()  # nothing written yet
    seeds = resolve(load_config(None, [*SETTINGS, f"output_dir={tmp_path}", "name=b", "seeds=[0, 2]"]))
    assert isinstance(seeds.root, SeedsCell)
    assert [(c.config.seed, c.folder.path.name) for c in seeds.root.seeds] == [(0, "seed-0"), (2, "seed-2")]
    orders = "orders={f: [Stance-Policy, QA-Choice], b: [QA-Choice, Stance-Policy]}"
    repeated = resolve(load_config(None, [*SETTINGS, f"output_dir={tmp_path}", "name=c", orders, "seeds=[1]"]))
    assert isinstance(repeated.root, ConditionsCell) and repeated.root.kind == "order"
    backward = repeated.root.conditions["b"]
    assert isinstance(backward, SeedCell) and backward.config.seed == 1
    assert [t.name for t in backward.tasks] == ["QA-Choice", "Stance-Policy"]


def test_run_seeds_1_runs_seed_1(tmp_path, capsys):
    assert main(["run", str(config_file(tmp_path)), "--seeds", "1", "--name", "one"]) == 0
    results = read_results(tmp_path / "one" / "results.json")
    assert isinstance(results, RunResults) and results.seed == 1 and results.complete
    assert "run folder:" in capsys.readouterr().out


def test_methods_selects_the_configs_variants(tmp_path):
    path = config_file(tmp_path, "variants={lora-r2: {method: lora, adapter: {rank: 2}, match: none}}")
    assert main(["run", str(path), "--methods", "lora-r2", "--name", "picked"]) == 0
    results = read_results(tmp_path / "picked" / "results.json")
    assert list(results.methods) == ["lora-r2"] and results.methods["lora-r2"]["adapter"]["rank"] == 2


def test_methods_naming_no_method_or_variant_is_one_line(tmp_path, capsys):
    assert main(["run", str(config_file(tmp_path)), "--methods", "lora,nope"]) == 2
    err = capsys.readouterr().err
    assert "'nope' is neither a method" in err and len(err.strip().splitlines()) == 1
    assert not any(p.is_dir() for p in tmp_path.iterdir())


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", str(config_file(out)), "--name", "done"]) == 0
    return out / "done"


def test_a_finished_run_knows_it_and_holds_its_fingerprint(finished):
    folder = RunFolder(finished)
    assert folder.finished and not folder.checkpoints.exists()
    plan = json.loads(folder.plan.read_text())
    assert plan["settings"]["train.lr"] == 0.01 and plan["model"] == "tiny:llama" and plan["seeds"] == [0]
    assert set(plan["versions"]) == {"torch", "transformers", "accelerate"} and len(plan["code"]) == 16


def test_resume_refuses_a_run_whose_settings_were_edited(finished, tmp_path):
    copy = tmp_path / "edited"
    copy.mkdir()
    for name in ("config.yaml", "plan.json"):
        (copy / name).write_text((finished / name).read_text())
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["train"]["lr"] = 0.5
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(CheckpointError, match=r"other settings or code.*train\.lr: 0\.01 -> 0\.5"):
        resolve(resume=copy)


def test_resume_refuses_a_finished_run(finished):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        resolve(resume=finished)


def test_results_files_of_every_shape_and_schema_are_read_or_refused_in_one_line(finished, tmp_path):
    current = json.loads((finished / "results.json").read_text())
    assert current["shape"] == "run" and current["schema"] == SCHEMA
    legacy = {k: v for k, v in current.items() if k not in ("shape", "schema", "complete")}
    assert isinstance(from_dict(legacy), RunResults) and from_dict(legacy).complete is False
    summary = {"tasks": [], "model": "m", "seeds": [0], "reference": None, "summary": {}, "paired": {}}
    assert isinstance(from_dict({**summary, "per_seed": {}}), SeedsSummary)
    conditions = {"model": "m", "kind": "order", "reference": None, "metrics": [], "conditions": {}}
    assert isinstance(from_dict({**conditions, "agreement": {}, "gap_change": {}}), ConditionsSummary)
    with pytest.raises(CheckpointError, match=r"x\.json: results schema 99 is newer"):
        from_dict({**current, "schema": 99}, "x.json")
    with pytest.raises(CheckpointError, match="not a results file of any known shape"):
        from_dict({"hello": 1})
    with pytest.raises(CheckpointError, match="incomplete run results"):
        from_dict({"shape": "run", "schema": SCHEMA, "tasks": []})
    (tmp_path / "results.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="unreadable"):
        read_results(tmp_path / "results.json")


def test_results_without_the_complete_flag_are_finished_by_their_report(finished, tmp_path):
    folder = RunFolder(tmp_path)
    current = json.loads((finished / "results.json").read_text())
    (tmp_path / "results.json").write_text(json.dumps({k: v for k, v in current.items() if k != "complete"}))
    assert not folder.finished
    (tmp_path / "report.md").write_text("# report\n")
    assert folder.finished


def test_bad_data_fails_while_resolving_before_anything_is_written(tmp_path):
    with pytest.raises(MhmoeError, match="Nope"):
        resolve(load_config(None, [*SETTINGS, f"output_dir={tmp_path}", "name=x", "data.order=[Nope, QA-Choice]"]))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["../outside", "/tmp/absolute", "a/b", ".hidden"])
def test_run_names_stay_inside_output_dir(tmp_path, name):
    with pytest.raises(ConfigError, match="field 'name'.*letters, digits"):
        resolve(load_config(None, [*SETTINGS, f"output_dir={tmp_path}", f"name={name}"]))


def test_a_run_name_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        resolve(load_config(None, [*SETTINGS, f"output_dir={tmp_path}", "name=taken"]))


def test_a_run_stopped_before_its_first_checkpoint_starts_again_on_resume(tmp_path):
    config = load_config(None, [*SETTINGS, f"output_dir={tmp_path}", "name=early", "seeds=[2]"])
    plan = resolve(config)
    start(plan)  # what a run writes before its first checkpoint, then it stops
    (plan.root.folder.metrics).write_text('{"event": "eval", "method": "untrained"}\n')
    assert main(["run", "--resume", str(tmp_path / "early")]) == 0
    results = read_results(tmp_path / "early" / "results.json")
    assert results.complete and results.seed == 2
    events = [json.loads(line)["event"] for line in (tmp_path / "early" / "metrics.jsonl").read_text().splitlines()]
    assert events.count("eval") == 1 + 2 * 1  # the untrained row once, then one per task: nothing stale kept
