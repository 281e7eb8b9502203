"""stream.schedule 'stream': one optimizer and one cosine over a stream with task boundaries, so the boundary
mode differs from the boundary-free one only in what the methods are told."""

import json

import pytest
import torch
from test_resume import kill_run_at, train_losses
from tiny_runs import tiny_run
from transformers import get_cosine_schedule_with_warmup

from mhmoe.cl.run import run
from mhmoe.cli import main
from mhmoe.config import load_config
from mhmoe.errors import ConfigError

SETTINGS = [
    *tiny_run(["Stance-Policy", "QA-Choice"], test=4, steps=4),
    "methods=[ewc, mhmoe]",
    "method_options.ewc.fisher_examples=4",
    "train.warmup_ratio=0.25",
    "train.checkpoint_every=2",
    "stream.schedule=stream",
]


def learning_rates(run_dir, method):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["lr"] for r in records if r["event"] == "train" and r["method"] == method]


@pytest.fixture(scope="module")
def stream_run(tmp_path_factory):
    return run(load_config(None, [*SETTINGS, f"output_dir={tmp_path_factory.mktemp('runs')}", "name=whole"]))


def test_one_cosine_runs_over_every_tasks_steps(stream_run, tmp_path):
    reference = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-2)
    schedule = get_cosine_schedule_with_warmup(reference, 2, 8)  # warmup 0.25 of 8 steps, 4 per task
    expected = []
    for _ in range(8):
        expected.append(schedule.get_last_lr()[0])
        reference.step(), schedule.step()
    assert learning_rates(stream_run, "mhmoe") == pytest.approx(expected)
    per_task = run(load_config(None, [*SETTINGS[:-1], f"output_dir={tmp_path}", "name=per-task"]))
    restarted = learning_rates(per_task, "mhmoe")
    assert restarted[:4] == restarted[4:]  # the default: a fresh schedule per task


def test_with_one_task_the_two_schedules_are_the_same_run(tmp_path):
    one = [s for s in SETTINGS if not s.startswith(("data.order", "stream.schedule"))] + ["data.order=[Stance-Policy]"]
    stream = run(load_config(None, [*one, "stream.schedule=stream", f"output_dir={tmp_path}", "name=s"]))
    task = run(load_config(None, [*one, "stream.schedule=task", f"output_dir={tmp_path}", "name=t"]))
    a, b = (json.loads((d / "results.json").read_text())["methods"] for d in (stream, task))
    assert all(a[m]["R"] == b[m]["R"] and a[m]["L"] == b[m]["L"] for m in a)
    assert train_losses(stream) == train_losses(task)


def test_a_killed_run_on_one_schedule_resumes_to_the_same_results(stream_run, tmp_path):
    # mhmoe's answer losses 9-16 come after EWC's 8; call 14 is mhmoe's second task, after a checkpoint
    killed = kill_run_at(SETTINGS, tmp_path, 14)
    assert main(["run", "--resume", str(killed)]) == 0
    whole = json.loads((stream_run / "results.json").read_text())["methods"]
    again = json.loads((killed / "results.json").read_text())["methods"]
    assert all(whole[m]["R"] == again[m]["R"] and whole[m]["L"] == again[m]["L"] for m in whole)
    assert train_losses(killed) == train_losses(stream_run)
    assert learning_rates(killed, "mhmoe") == learning_rates(stream_run, "mhmoe")


def test_a_method_that_trains_other_parameters_per_task_is_refused():
    with pytest.raises(ConfigError, match="'olora' cannot share one optimizer over the stream"):
        load_config(None, [*SETTINGS, "methods=[olora]"])
    with pytest.raises(ConfigError, match="field 'schedule' must be 'task' or 'stream'"):
        load_config(None, [*SETTINGS, "stream.schedule=global"])
