"""Task files in JSON, JSONL, CSV and Parquet with the user's own field names: the same records give the same
examples in every format, every malformed file is one line naming the file and the record, and such folders
run end to end through `mhmoe run --benchmark trace --data-dir ...`."""

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tiny_runs import tiny_run

from mhmoe.cli import main
from mhmoe.data.trace import DataError, load_task

RECORDS = [
    {"instruction": "Classify the stance.", "input": f"Statement {i}: rates should rise.", "reply": "AB"[i % 2]}
    for i in range(6)
]
SPEC = {"scorer": "accuracy", "prompt_template": "{instruction}\n{input}\nAnswer:", "answer_field": "reply"}


def write_split(path, records, fmt):
    if fmt == "json":
        path.with_suffix(".json").write_text(json.dumps(records))
    elif fmt == "jsonl":
        path.with_suffix(".jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    elif fmt == "csv":
        with path.with_suffix(".csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    else:
        pq.write_table(pa.Table.from_pylist(records), path.with_suffix(".parquet"))


def write_folder(root, name, fmt, spec=SPEC, records=RECORDS):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "task.json").write_text(json.dumps(spec))
    for split in ("train", "eval", "test"):
        write_split(folder / split, records, fmt)
    return folder


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "parquet"])
def test_every_format_gives_the_same_examples(tmp_path, fmt):
    task = load_task(write_folder(tmp_path, "Mine", fmt))
    first = task.split("train")[1]
    assert first.prompt == "Classify the stance.\nStatement 1: rates should rise.\nAnswer:" and first.answer == "B"
    assert first.features == {"instruction": "Classify the stance.", "input": "Statement 1: rates should rise."}
    assert [e.prompt for e in task.split("test")] == [
        e.prompt for e in load_task(write_folder(tmp_path / "ref", "Mine", "json")).split("test")
    ]


def test_a_prompt_field_instead_of_a_template(tmp_path):
    spec = {"scorer": "accuracy", "prompt_field": "question", "answer_field": "reply"}
    records = [{"question": "2+2?", "reply": "4", "topic": "math"}]
    task = load_task(write_folder(tmp_path, "Q", "jsonl", spec, records))
    assert (task.split("eval")[0].prompt, task.split("eval")[0].answer) == ("2+2?", "4")
    assert task.split("eval")[0].features == {"topic": "math"}


@pytest.mark.parametrize(
    ("fmt", "content", "message"),
    [
        ("jsonl", '{"instruction": "a", "input": "b", "reply": "A"}\n{oops\n', r"train.jsonl: record 1 \(line 2\)"),
        ("csv", "instruction,input,reply\na,b,A\na,b\n", r"train.csv: record 1 \(line 3\) has 2 cells"),
        ("csv", "", r"train.csv: file is empty"),
        ("parquet", "not parquet at all", r"train.parquet: not a readable Parquet file"),
        ("jsonl", '{"instruction": "a", "reply": "A"}\n', r"train.jsonl: record 0 has no field 'input' that prompt"),
        ("jsonl", '{"instruction": "a", "input": "b"}\n', r"train.jsonl: record 0 has no 'reply' field"),
        ("jsonl", '{"instruction": "a", "input": null, "reply": "A"}\n', r"record 0 field 'input' is a NoneType"),
        ("jsonl", "[1, 2]\n", r"train.jsonl: record 0 is a list, expected an object"),
    ],
)
def test_malformed_files_are_one_line_naming_file_and_record(tmp_path, fmt, content, message):
    folder = write_folder(tmp_path, "Mine", fmt)
    (folder / f"train.{fmt}").write_text(content)
    with pytest.raises(DataError, match=message) as err:
        load_task(folder)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"scorer": "accuracy", "prompt_template": "{a.b}"},
            r"may only name record fields, like \{input\}; got \{a.b\}",
        ),
        ({"scorer": "accuracy", "prompt_template": "{0}"}, r"got \{0\}"),
        ({"scorer": "accuracy", "prompt_template": "{oops"}, r"'prompt_template' is not a valid template"),
        ({"scorer": "accuracy", "answer_fiel": "x"}, r"task.json: unknown field 'answer_fiel'"),
        ({"scorer": "accuracy", "prompt_field": ""}, r"'prompt_field' must be a non-empty string"),
    ],
)
def test_a_bad_task_json_is_one_line(tmp_path, spec, message):
    with pytest.raises(DataError, match=message):
        load_task(write_folder(tmp_path, "Mine", "json", spec))


def test_a_split_in_two_formats_or_none_is_refused(tmp_path):
    folder = write_folder(tmp_path, "Mine", "json")
    write_split(folder / "train", RECORDS, "csv")
    with pytest.raises(DataError, match=r"split 'train' is in several files \(train.json, train.csv\)"):
        load_task(folder)
    for path in folder.glob("train.*"):
        path.unlink()
    with pytest.raises(DataError, match=r"train.json: file not found \(also looked for .jsonl, .csv, .parquet\)"):
        load_task(folder)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_user_folder_runs_end_to_end(tmp_path, fmt, capsys):
    data = tmp_path / "data"
    write_folder(data, "Rates", fmt)
    write_folder(data, "Rates-Again", fmt, records=[{**r, "reply": "BA"[i % 2]} for i, r in enumerate(RECORDS)])
    settings = [s for s in tiny_run(["Rates", "Rates-Again"]) if not s.startswith(("data.train", "data.test"))]
    args = ["run", "--benchmark", "trace", "--data-dir", str(data), "--methods", "lora", "--name", "mine"]
    args += [f"--set={s}" for s in [*settings, f"output_dir={tmp_path / 'runs'}", "train.max_steps=2"]]
    assert main(args) == 0
    results = json.loads((tmp_path / "runs" / "mine" / "results.json").read_text())
    assert results["tasks"] == ["Rates", "Rates-Again"] and len(results["methods"]["lora"]["R"]) == 2
    assert "| lora |" in capsys.readouterr().out
