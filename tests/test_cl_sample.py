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
