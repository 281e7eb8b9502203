"""Streams without task boundaries: no hook hears of a task, the anytime record is kept in both modes, the
methods consolidate on their own clock, a killed run resumes exactly, and the modes are compared."""

import json

import pytest
from test_resume import kill_run_at, train_losses
from tiny_runs import tiny_run

from mhmoe.cl.anytime_record import stream_plan
from mhmoe.cl.methods import METHODS, Method, NoHooks
from mhmoe.cl.methods.windows import StepWindows
from mhmoe.cl.run import run
from mhmoe.cli import main
from mhmoe.config import load_config
from mhmoe.data.stream import load_tasks
from mhmoe.data.trace import Example
from mhmoe.errors import ConfigError

SETTINGS = [
    *tiny_run(["Stance-Policy", "QA-Choice"], test=4, steps=4),
    "train.checkpoint_every=2",
    "stream.eval_every=3",
    "stream.consolidate_every=2",
    "method_options={replay: {memory_per_task: 4}, ewc: {fisher_examples: 4}, gem: {memory_per_task: 4}}",
]
TASKFREE = [*SETTINGS, "stream.boundaries=false", "stream.blur=0.2", "methods=[replay, ewc, gem, mhmoe]"]


class Spy(NoHooks):
    calls: list = []

    def before_task(self, model, task):
        Spy.calls.append(("before_task", task.name))

    def after_task(self, model, task):
        Spy.calls.append(("after_task", task.name))

    def after_step(self, model, examples):
        Spy.calls.append(("after_step", len(examples)))


def test_no_hook_hears_of_a_task_without_boundaries(tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "lora", Method("lora", "lora", Spy, "spy"))
    Spy.calls = []
    run(
        load_config(None, [*SETTINGS, "stream.boundaries=false", "methods=[lora]", f"output_dir={tmp_path}", "name=s"])
    )
    assert Spy.calls == [("after_step", 4)] * 8  # 2 tasks x 4 steps, one call per step, no task event at all
    Spy.calls = []
    run(load_config(None, [*SETTINGS, "methods=[lora]", f"output_dir={tmp_path}", "name=b"]))
    assert [c[0] for c in Spy.calls] == ["before_task", "after_task"] * 2  # the boundary mode does tell


@pytest.fixture(scope="module")
def taskfree(tmp_path_factory):
    run_dir = run(load_config(None, [*TASKFREE, f"output_dir={tmp_path_factory.mktemp('runs')}", "name=whole"]))
    return run_dir, json.loads((run_dir / "results.json").read_text())


def test_a_taskfree_run_keeps_an_anytime_record_and_no_task_matrix(taskfree):
    run_dir, results = taskfree
    for name, m in results["methods"].items():
        assert "R" not in m and m["boundaries"] is False and m["blur"] == 0.2
        assert m["anytime"]["steps"] == [3, 6, 8]  # every 3 steps of the 8-step stream, and its end
        assert len(m["anytime"]["A"]) == 3 and all(len(row) == 2 for row in m["anytime"]["A"])
        assert m["final_op"] == sum(m["anytime"]["A"][-1]) / 2
        assert (run_dir / "adapters" / name / "stream" / "adapter_model.safetensors").is_file()
    report = (run_dir / "report.md").read_text()
    assert "## Any time" in report and "| replay | no boundaries (blur 0.2) |" in report
    assert (run_dir / "anytime.png").read_bytes()[:4] == b"\x89PNG" and not (run_dir / "R.png").exists()


def test_the_boundary_mode_scores_at_the_same_steps_and_its_task_ends_are_rows_of_R(tmp_path):
    run_dir = run(load_config(None, [*SETTINGS, "methods=[ewc]", f"output_dir={tmp_path}", "name=b"]))
    m = json.loads((run_dir / "results.json").read_text())["methods"]["ewc"]
    assert m["anytime"]["steps"] == [3, 6, 8]
    assert m["anytime"]["A"][-1] == m["R"][-1]  # step 8 is the last task's end: the same evaluation
    assert "anytime_avg" in m and "bwt" in m


def test_consolidation_windows_hand_over_every_n_steps():
    windows = StepWindows(2)
    steps = [[Example(f"p{s}{i}", "A", {}) for i in range(3)] for s in range(5)]
    handed = [windows.add(examples) for examples in steps]
    assert [w is None for w in handed] == [True, False, True, False, True]
    assert [e.prompt for e in handed[3].split("train")] == [e.prompt for e in steps[2] + steps[3]]
    assert handed[3].name == "window-2"


def test_the_plan_trains_each_task_on_its_boundary_mode_examples():
    config = load_config(None, [*SETTINGS, "stream.boundaries=false", "stream.blur=0.3"])
    tasks = load_tasks(config.data, 0)
    blurred = stream_plan(tasks, config.train, 0.3, seed=0)
    hard = stream_plan(tasks, config.train, 0.0, seed=0)
    assert [e.prompt for e in hard[0]] != [e.prompt for e in blurred[3]] or len(hard) == len(blurred) == 8
    assert sorted(e.prompt for step in blurred for e in step) == sorted(e.prompt for step in hard for e in step)
    assert {e.prompt for e in hard[0]} <= {e.prompt for e in tasks[0].split("train")}  # blur 0: task 1 first


def test_a_taskfree_run_killed_mid_stream_resumes_to_the_same_results(taskfree, tmp_path):
    whole, expected = taskfree
    # 4 methods x 8 steps; replay's penalty runs answer_loss too, so call 20 lands inside a later method's stream
    run_dir = kill_run_at(TASKFREE, tmp_path, 20)
    assert main(["run", "--resume", str(run_dir)]) == 0
    resumed = json.loads((run_dir / "results.json").read_text())
    for name, m in expected["methods"].items():
        assert resumed["methods"][name]["anytime"] == m["anytime"], name
    assert train_losses(run_dir) == train_losses(whole)


def test_methods_that_need_task_identities_are_refused_without_boundaries():
    with pytest.raises(ConfigError, match="'olora' cannot run without task boundaries") as err:
        load_config(None, [*SETTINGS, "stream.boundaries=false", "methods=[olora]"])
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="'eval_every' must be > 0"):
        load_config(None, ["stream.boundaries=false"])
    with pytest.raises(ConfigError, match="'modes' must list modes"):
        load_config(None, ["modes=[boundaries, online]"])


def test_modes_compare_every_gap_with_and_without_boundaries(tmp_path):
    settings = [*SETTINGS, "methods=[ewc, mhmoe]", "modes=[boundaries, taskfree]", "seeds=[0, 1]"]
    run_dir = run(load_config(None, [*settings, f"output_dir={tmp_path}", "name=modes"]))
    results = json.loads((run_dir / "results.json").read_text())
    assert results["kind"] == "mode" and list(results["conditions"]) == ["boundaries", "taskfree"]
    assert results["metrics"] == ["anytime_avg", "final_op", "peak_forgetting", "loss_peak_forgetting"]
    change = results["gap_change"]["ewc"]["taskfree"]["anytime_avg"]
    free = results["conditions"]["taskfree"]["paired"]["ewc"]["anytime_avg"]["differences"]
    bound = results["conditions"]["boundaries"]["paired"]["ewc"]["anytime_avg"]["differences"]
    assert change["differences"] == pytest.approx([f - b for f, b in zip(free, bound, strict=True)])
    report = (run_dir / "report.md").read_text()
    assert "## How the gaps change between modes" in report and "mhmoe - ewc: taskfree minus boundaries" in report
