"""The CL Benchmark sample shipped with the package: its files are the ones provenance.json records (SHA-256),
the counts and labels it states hold, the splits are disjoint, and `data.benchmark: cl_sample` reads it offline
through the CL Benchmark reader into O-LoRA's prompts."""

import hashlib
import json

import pyarrow.parquet as pq
import pytest

from mhmoe.data.cl_benchmark import SAMPLE_ORDER, SAMPLE_ROOT
from mhmoe.data.stream import load_tasks
from mhmoe.errors import ConfigError
from mhmoe.settings import DataSettings

PROVENANCE = json.loads((SAMPLE_ROOT / "provenance.json").read_text(encoding="utf-8"))


def test_every_file_is_the_one_its_provenance_records():
    on_disk = {
        str(p.relative_to(SAMPLE_ROOT)) for p in SAMPLE_ROOT.rglob("*") if p.suffix in (".parquet", ".json")
    } - {"provenance.json"}
    assert on_disk == set(PROVENANCE["files"])
    for name, digest in PROVENANCE["files"].items():
        assert hashlib.sha256((SAMPLE_ROOT / name).read_bytes()).hexdigest() == digest, name
    assert PROVENANCE["commit"] == "07117e1fc4a5f5ad9308a815a42cee8f46502dc8"
    assert PROVENANCE["source"] == "https://github.com/cmnfriend/O-LoRA"


@pytest.mark.parametrize("name", SAMPLE_ORDER)
def test_counts_labels_and_disjoint_splits_hold(name):
    record = PROVENANCE["datasets"][name]
    folder = SAMPLE_ROOT / record["family"] / name
    splits = {split: pq.read_table(folder / f"{split}.parquet").to_pylist() for split in ("train", "dev", "test")}
    assert {split: len(rows) for split, rows in splits.items()} == record["records"]
    assert json.loads((folder / "labels.json").read_text()) == record["labels"]
    for rows in splits.values():
        assert {row["label"] for row in rows} <= set(record["labels"])
        assert len({row["label"] for row in rows}) > 1
    sentences = {split: {row["sentence"] for row in rows} for split, rows in splits.items()}
    assert not sentences["train"] & sentences["test"]
    assert not sentences["dev"] & sentences["test"]
    assert not sentences["train"] & sentences["dev"]


def test_the_sample_reads_offline_as_a_cl_benchmark_stream():
    tasks = load_tasks(DataSettings(benchmark="cl_sample", test_limit=50), seed=0)
    assert [t.name for t in tasks] == SAMPLE_ORDER == ["dbpedia", "MNLI", "BoolQA"]
    first = tasks[0].split("test")[0]
    assert first.prompt.startswith("Task:TC\nDataset:dbpedia\nWhat is the topic of the following paragraph?")
    assert first.prompt.endswith("\nAnswer:") and first.answer in tasks[0].options
    assert [len(t.split("test")) for t in tasks] == [50, 50, 50]
    assert [len(t.split("train")) for t in tasks] == [1000, 1000, 1000]
    assert tasks[2].options == ["True", "False"]


def test_cl_sample_needs_no_data_dir_and_says_one_is_ignored():
    assert DataSettings(benchmark="cl_sample").ignored() == []
    assert "ignored by 'cl_sample'" in DataSettings(benchmark="cl_sample", data_dir="x").ignored()[0]
    with pytest.raises(ConfigError, match="'benchmark' must be one of"):
        DataSettings(benchmark="cl-sample")


PEOPLE = {"Company": "A", "Educational Institution": "B", "Artist": "C", "Athlete": "D"}


def test_a_derived_task_keeps_the_mapped_labels_records_answered_by_the_mapped_words():
    derived = {"people": {"dataset": "dbpedia", "labels": PEOPLE}}
    (task,) = load_tasks(DataSettings(benchmark="cl_sample", order=["people"], derived_tasks=derived), seed=0)
    source = pq.read_table(SAMPLE_ROOT / "TC" / "dbpedia" / "test.parquet").to_pylist()
    kept = [row for row in source if row["label"] in PEOPLE]
    examples = task.split("test")
    assert task.options == ["A", "B", "C", "D"] and len(examples) == len(kept) > 20
    for example, row in zip(examples, kept, strict=True):  # source order kept
        assert example.answer == PEOPLE[row["label"]] == example.features["label"]
        assert example.features["source_label"] == row["label"]
        assert example.prompt.startswith("Task:TC\nDataset:people\n") and "Option: A, B, C, D \n" in example.prompt
        assert row["sentence"] in example.prompt


def test_a_derived_task_naming_an_unknown_label_or_malformed_is_refused_in_one_line():
    from mhmoe.data.trace import DataError

    derived = {"people": {"dataset": "dbpedia", "labels": {**PEOPLE, "Painter": "E"}}}
    with pytest.raises(DataError, match=r"derived_tasks.people.labels: 'Painter' is not a label of dbpedia"):
        load_tasks(DataSettings(benchmark="cl_sample", order=["people"], derived_tasks=derived), seed=0)
    for bad in ({"dataset": "dbpedia"}, {"dataset": "dbpedia", "labels": {}}, {"dataset": 3, "labels": PEOPLE},
                {"dataset": "dbpedia", "labels": {"Company": 1}}):  # fmt: skip
        with pytest.raises(ConfigError, match="derived_tasks.people"):
            DataSettings(benchmark="cl_sample", derived_tasks={"people": bad})
    assert "derived_tasks is read by the CL Benchmark only" in DataSettings(derived_tasks={"x": {
        "dataset": "dbpedia", "labels": PEOPLE}}).ignored()[0]  # fmt: skip
