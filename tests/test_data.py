"""The TRACE-format loader's validation and the built-in stream generator."""

import json

import pytest

from mhmoe.data import load_stream, load_task
from mhmoe.data.builtin import DEFAULT_ORDER, TASKS, write_builtin
from mhmoe.data.trace import DataError


def write_task(root, name, records, spec=None):
    folder = root / name
    folder.mkdir(parents=True)
    for split in ("train", "eval", "test"):
        (folder / f"{split}.json").write_text(json.dumps(records, ensure_ascii=False))
    if spec is not None:
        (folder / "task.json").write_text(json.dumps(spec))
    return folder


GOOD = [{"prompt": "Wie heißt die Hauptstadt? 答案:", "answer": "Berlin"}, {"prompt": "x", "answer": "", "label": 3}]


def test_loads_trace_names_unicode_and_features(tmp_path):
    task = load_task(write_task(tmp_path, "FOMC", GOOD))
    assert task.scorer == "accuracy" and task.split("test")[0].prompt.startswith("Wie heißt")
    assert task.split("train")[1].answer == "" and task.split("train")[1].features == {"label": "3"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", r"train.json: file is empty"),
        ("[{]", r"train.json: invalid JSON at line 1"),
        ('{"prompt": "a"}', r"train.json: expected a JSON list"),
        ("[]", r"train.json: the list of records is empty"),
        ('[{"prompt": "a", "answer": "b"}, 7]', r"train.json: record 1 is a int"),
        ('[{"prompt": "a"}]', r"train.json: record 0 has no 'answer' field"),
        ('[{"prompt": "a", "answer": 5}]', r"train.json: record 0 field 'answer' is a int, not a string"),
        (
            '[{"prompt": "a", "answer": "b"}, {"prompt": "  ", "answer": "c"}]',
            r"train.json: record 1 has an empty prompt",
        ),
    ],
)
def test_malformed_files_name_file_and_record(tmp_path, content, message):
    folder = write_task(tmp_path, "FOMC", GOOD)
    (folder / "train.json").write_text(content)
    with pytest.raises(DataError, match=message) as err:
        load_task(folder)
    assert "\n" not in str(err.value)


def test_missing_split_folder_and_unknown_scorer(tmp_path):
    folder = write_task(tmp_path, "FOMC", GOOD)
    (folder / "eval.json").unlink()
    with pytest.raises(DataError, match=r"eval.json: file not found"):
        load_task(folder)
    with pytest.raises(DataError, match="task folder not found"):
        load_stream(tmp_path, ["C-STANCE"])
    with pytest.raises(DataError, match="no scorer known for task 'Mine'"):
        load_task(write_task(tmp_path, "Mine", GOOD))
    with pytest.raises(DataError, match="field 'scorer' must be one of"):
        load_task(write_task(tmp_path, "Other", GOOD, spec={"scorer": "bleu"}))


def test_caps_are_seeded_samples(tmp_path):
    records = [{"prompt": f"p{i}", "answer": "a"} for i in range(20)]
    folder = write_task(tmp_path, "FOMC", records)
    a = load_task(folder, limits={"train": 5}, seed=1).split("train")
    assert len(a) == 5 and a == load_task(folder, limits={"train": 5}, seed=1).split("train")
    assert a != load_task(folder, limits={"train": 5}, seed=2).split("train")


def test_builtin_stream_is_deterministic_disjoint_and_interferes(tmp_path):
    sizes = {"train": 64, "eval": 8, "test": 16}
    tasks = load_stream(write_builtin(tmp_path / "a", seed=3, sizes=sizes), DEFAULT_ORDER)
    again = load_stream(write_builtin(tmp_path / "b", seed=3, sizes=sizes), DEFAULT_ORDER)
    assert [t.splits for t in tasks] == [t.splits for t in again]
    assert len(tasks) == 6 and {t.scorer for t in tasks} == {"accuracy", "rouge_l", "similarity"}
    for task in tasks:
        assert task.scorer == TASKS[task.name][0]
        assert {len(v) for v in task.splits.values()} == {64, 8, 16}
        prompts = [{e.prompt for e in task.split(s)} for s in ("train", "eval", "test")]
        assert not (prompts[0] & prompts[1] or prompts[0] & prompts[2] or prompts[1] & prompts[2])
        assert all({"domain", "label"} <= set(e.features) for e in task.split("train"))
    policy, bank = (next(t for t in tasks if t.name == n) for n in ("Stance-Policy", "Stance-CentralBank"))
    # the same tone phrase answers A in one domain and B in the other
    from mhmoe.data.builtin import TONES

    def letters_by_tone(task):
        found = {}
        for e in task.split("train"):
            tone = next(t for t, phrases in TONES.items() if any(p in e.prompt for p in phrases))
            found.setdefault(tone, set()).add(e.answer)
        return found

    assert letters_by_tone(policy) == {"support": {"A"}, "oppose": {"B"}, "neutral": {"C"}, "query": {"D"}}
    # only support and oppose swap: a full overwrite of the policy mapping still gets half its statements right
    assert letters_by_tone(bank) == {"support": {"B"}, "oppose": {"A"}, "neutral": {"C"}, "query": {"D"}}


def test_stance_tasks_letters_balance_and_seed(tmp_path):
    from mhmoe.data.builtin import TONES

    # one polarity's phrases share no word with the other's (shared adverbs kept the model from learning it)
    # (prepositions aside) one tone's phrases share no word with another's
    words = {tone: {w for p in phrases for w in p.split()} - {"of", "on", "about"} for tone, phrases in TONES.items()}
    assert not any(words[a] & words[b] for a in words for b in words if a < b)
    sizes = {"train": 256, "eval": 32, "test": 100}
    order = ["Stance-Policy", "Stance-CentralBank"]
    tasks = load_stream(write_builtin(tmp_path / "a", seed=1, sizes=sizes, tasks=order), order)
    other = load_stream(write_builtin(tmp_path / "b", seed=2, sizes=sizes, tasks=order), order)
    for task, changed in zip(tasks, other, strict=True):
        assert task.splits != changed.splits
        examples = [e for s in ("train", "eval", "test") for e in task.split(s)]
        assert len({e.prompt for e in examples}) == len(examples) == 388
        assert {e.answer for e in examples} == {"A", "B", "C", "D"}
        for letter in "ABCD":  # roughly a quarter each
            assert 0.18 < sum(e.answer == letter for e in examples) / len(examples) < 0.32


def test_a_builtin_tasks_records_are_the_same_in_every_order(tmp_path):
    """Orders are compared on the same data: a task's sample depends on the seed and the task, not its position."""
    forward = write_builtin(tmp_path / "f", seed=3, tasks=["Stance-Policy", "QA-Choice", "Arithmetic"])
    backward = write_builtin(tmp_path / "b", seed=3, tasks=["Arithmetic", "QA-Choice", "Stance-Policy"])
    for task in ("Stance-Policy", "QA-Choice", "Arithmetic"):
        for split in ("train", "eval", "test"):
            assert (forward / task / f"{split}.json").read_text() == (backward / task / f"{split}.json").read_text()
    other_seed = write_builtin(tmp_path / "s", seed=4, tasks=["QA-Choice"])
    assert (other_seed / "QA-Choice" / "test.json").read_text() != (forward / "QA-Choice" / "test.json").read_text()


def test_non_utf8_files_are_refused_at_their_byte_unless_an_encoding_is_given(tmp_path):
    folder = write_task(tmp_path, "FOMC", GOOD)
    latin1 = "prompt,answer\nCafé ou thé?,thé\n".encode("latin-1")
    (folder / "train.json").unlink()
    (folder / "train.csv").write_bytes(latin1)
    with pytest.raises(DataError, match=r"train.csv: not valid utf-8 at byte 17 .*set data.encoding") as err:
        load_task(folder)
    assert "\n" not in str(err.value)
    task = load_task(folder, encoding="latin-1")
    assert task.split("train")[0].prompt == "Café ou thé?" and task.split("train")[0].answer == "thé"


def test_settings_the_benchmark_ignores_are_named():
    from mhmoe.settings import DataSettings

    notes = DataSettings(benchmark="trace", data_dir="x", test_size=40).ignored()
    assert notes == [
        "data.test_size=40 sizes the built-in benchmark only and is ignored with 'trace' (data.test_limit caps its "
        "splits)"
    ]
    assert DataSettings().ignored() == [] and DataSettings(benchmark="trace", data_dir="x").ignored() == []
    assert "instruction_file" in DataSettings(instruction_file="i.json").ignored()[0]
