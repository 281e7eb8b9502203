"""The CL Benchmark reader on a hand-written fixture in O-LoRA's layout: prompts as O-LoRA builds them, the
instruction file found where O-LoRA-style checkouts keep it, one-line errors, and each published order running
end to end (the long sequence validated)."""

import json
import shutil
from pathlib import Path

import pytest
from tiny_runs import tiny_run

from mhmoe.cl.run import run
from mhmoe.config import load_config
from mhmoe.data.cl_benchmark import load_cl_stream
from mhmoe.data.trace import DataError
from mhmoe.metrics.text import exact_match

FIXTURE = Path(__file__).parent / "fixtures" / "cl_benchmark"
ROOT = FIXTURE / "CL_Benchmark"


def test_prompts_are_built_as_olora_builds_them():
    dbpedia, amazon = load_cl_stream(ROOT, ["dbpedia", "amazon"])
    first = dbpedia.split("train")[0]
    assert first.prompt == (
        "Task:TC\nDataset:dbpedia\nWhat is the topic of the following paragraph? Choose one from the option.\n"
        "Option: Company, Artist, Village \nAcme Tools is a manufacturer of hand tools founded in 1921.\nAnswer:"
    )
    assert first.answer == "Company" and first.features == {"label": "Company", "family": "TC"}
    assert amazon.split("eval")[1].prompt.startswith("Task:SC\nDataset:amazon\nWhat is the sentiment")
    assert [len(dbpedia.split(s)) for s in ("train", "eval", "test")] == [6, 3, 3]  # dev.json is the eval split
    assert dbpedia.scorer == "exact_match" and dbpedia.max_new_tokens == 50


def test_exact_match_ignores_case_punctuation_and_spacing():
    assert exact_match(" science or  technology.", "Science or Technology") == 100.0
    assert exact_match("Science", "Science or Technology") == 0.0


def test_copa_prompts_carry_no_options(tmp_path):
    root = tmp_path / "CL_Benchmark"
    shutil.copytree(ROOT, root)
    shutil.copytree(FIXTURE / "configs", tmp_path / "configs")
    copa = root / "COPA" / "COPA"
    copa.mkdir(parents=True)
    record = {"sentence": "Which is the cause? Choose one between A and B.\nA: rain\nB: sun", "label": "A"}
    for split in ("train", "dev", "test"):
        (copa / f"{split}.json").write_text(json.dumps([record]))
    (copa / "labels.json").write_text('["A", "B"]')
    (task,) = load_cl_stream(root, ["COPA"])
    assert task.split("test")[0].prompt == f"Task:COPA\nDataset:COPA\n{record['sentence']}\nAnswer:"


def test_the_instruction_file_is_found_where_checkouts_keep_it(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(ROOT, root)
    with pytest.raises(DataError, match="no instruction_config.json found"):
        load_cl_stream(root, ["dbpedia"])
    (root / "configs").mkdir()
    custom = json.loads((FIXTURE / "configs" / "instruction_config.json").read_text())
    custom["TC"][0]["instruction"] = "Topic?\n"
    (root / "configs" / "instruction_config.json").write_text(json.dumps(custom))
    assert "\nTopic?\nOption:" in load_cl_stream(root, ["dbpedia"])[0].split("train")[0].prompt
    (root / "instruction_config.json").write_text(json.dumps({"TC": [{"instruction": "Root?\n"}]}))
    assert "\nRoot?\nOption:" in load_cl_stream(root, ["dbpedia"])[0].split("train")[0].prompt
    given = tmp_path / "mine.json"
    given.write_text(json.dumps({"TC": [{"instruction": "Given?\n"}]}))
    prompt = load_cl_stream(root, ["dbpedia"], instruction_file=str(given))[0].split("train")[0].prompt
    assert "\nGiven?\nOption:" in prompt


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: (r / "TC" / "dbpedia" / "labels.json").unlink(), r"dbpedia/labels.json: file not found"),
        (lambda r: (r / "TC" / "dbpedia" / "dev.json").unlink(), r"dbpedia/dev.json: file not found"),
        (
            lambda r: (r / "TC" / "dbpedia" / "test.json").write_text('[{"sentence": "x"}]'),
            r"record 0 needs a 'label'",
        ),
        (lambda r: (r / "TC" / "dbpedia" / "labels.json").write_text("{}"), r"a non-empty JSON list of label"),
        (lambda r: shutil.rmtree(r / "TC" / "dbpedia"), r"dataset 'dbpedia' not found"),
    ],
)
def test_a_broken_dataset_is_one_line_naming_the_file(tmp_path, mutate, message):
    root = tmp_path / "CL_Benchmark"
    shutil.copytree(ROOT, root)
    shutil.copytree(FIXTURE / "configs", tmp_path / "configs")
    mutate(root)
    with pytest.raises(DataError, match=message) as err:
        load_cl_stream(root, ["dbpedia"])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("preset", ["cl-order1", "cl-order2", "cl-order3"])
def test_each_published_order_runs_end_to_end_on_the_fixture(preset, tmp_path):
    order = load_config(preset).data.order
    settings = [s for s in tiny_run(order, steps=1) if not s.startswith(("data.train", "data.test", "data.order"))]
    overrides = [*settings, f"data.data_dir={ROOT}", "methods=[mhmoe]", "eval.max_new_tokens=4"]
    config = load_config(preset, [*overrides, f"output_dir={tmp_path}"])
    results = json.loads((run(config) / "results.json").read_text())
    assert results["tasks"] == order and len(results["methods"]["mhmoe"]["R"]) == 4


def test_the_long_sequence_preset_holds_the_published_order():
    config = load_config("cl-long")
    assert config.data.benchmark == "cl_benchmark" and config.data.order == [
        "yelp", "amazon", "MNLI", "CB", "COPA", "QQP", "RTE", "IMDB", "SST-2", "dbpedia", "agnews", "yahoo",
        "MultiRC", "BoolQA", "WiC",
    ]  # fmt: skip
    assert load_config("cl-order1").data.order == ["dbpedia", "amazon", "yahoo", "agnews"]
