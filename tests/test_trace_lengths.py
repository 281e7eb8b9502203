"""Generation lengths of TRACE tasks: what TRACE's own inference uses unless task.json says otherwise."""

import json

import pytest

from mhmoe.data.trace import TRACE_MAX_NEW_TOKENS, TRACE_SCORERS, load_task


def write_task(root, name, spec=None):
    folder = root / name
    folder.mkdir()
    for split in ("train", "eval", "test"):
        (folder / f"{split}.json").write_text(json.dumps([{"prompt": "p", "answer": "a"}]))
    if spec is not None:
        (folder / "task.json").write_text(json.dumps(spec))
    return folder


@pytest.mark.parametrize("name", sorted(TRACE_SCORERS))
def test_trace_tasks_generate_as_long_as_trace_inference(tmp_path, name):
    # TRACE's scripts pass --max_ans_len 512, used as max_new_tokens for every task.
    assert TRACE_MAX_NEW_TOKENS == 512
    assert load_task(write_task(tmp_path, name)).max_new_tokens == 512


def test_task_json_and_other_tasks_keep_their_lengths(tmp_path):
    assert load_task(write_task(tmp_path, "MeetingBank", {"max_new_tokens": 100})).max_new_tokens == 100
    assert load_task(write_task(tmp_path, "Mine", {"scorer": "rouge_l"})).max_new_tokens == 64
    assert load_task(write_task(tmp_path, "Choice", {"scorer": "accuracy"})).max_new_tokens == 16
