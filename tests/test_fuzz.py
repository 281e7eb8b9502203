"""Fuzz-style: many malformed configs and data files, each refused by `mhmoe run` with a one-line error
(no traceback), before anything is written."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from mhmoe.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "trace"
BASE = {
    "model": {"name": "tiny:llama"},
    "data": {"order": ["Stance-Policy", "Arithmetic"], "train_size": 8, "test_size": 4},
    "train": {"max_steps": 1, "batch_size": 4},
    "progress": False,
    "methods": ["lora", "mhmoe"],
}

# (what is wrong, {dotted key: value}); None as a value deletes the key.
CONFIGS = [
    ("unknown top-level key", {"lerning_rate": 1}),
    ("unknown train key", {"train.lrr": 1e-3}),
    ("negative lr", {"train.lr": -1e-3}),
    ("zero lr", {"train.lr": 0}),
    ("lr not a number", {"train.lr": "fast"}),
    ("batch size zero", {"train.batch_size": 0}),
    ("batch size fractional", {"train.batch_size": 2.5}),
    ("epochs negative", {"train.epochs": -1}),
    ("max_steps zero", {"train.max_steps": 0}),
    ("max_length zero", {"train.max_length": 0}),
    ("max_length leaving no answer", {"train.max_length": 1}),
    ("max_length cutting the answer", {"train.max_length": 3}),
    ("warmup ratio 1.5", {"train.warmup_ratio": 1.5}),
    ("one beta", {"train.betas": [0.9]}),
    ("beta of 1", {"train.betas": [0.9, 1.0]}),
    ("negative clipping", {"train.max_grad_norm": -1}),
    ("negative checkpoint interval", {"train.checkpoint_every": -1}),
    ("grad_accum a string", {"train.grad_accum": "two"}),
    ("no methods", {"methods": []}),
    ("unknown method", {"methods": ["lora", "sgd"]}),
    ("methods not a list", {"methods": 3}),
    ("heads not dividing the width", {"adapters.mhmoe.heads": 7}),
    ("top_k above experts", {"adapters.mhmoe.top_k": 5}),
    ("zero experts", {"adapters.loramoe.experts": 0, "methods": ["loramoe"]}),
    ("zero rank", {"adapters.lora.rank": 0}),
    ("dropout 1.5", {"adapters.lora.dropout": 1.5}),
    ("no target modules", {"adapters.lora.target_modules": []}),
    ("target modules matching nothing", {"adapters.lora.target_modules": ["q_projection"]}),
    ("unknown adapter kind", {"adapters.dense": {}}),
    ("unknown adapter field", {"adapters.mhmoe.routers": 2}),
    ("unknown gate", {"adapters.mhmoe.gate": "soft"}),
    ("negative balance", {"adapters.mhmoe.balance_coef": -0.1}),
    ("missing model path", {"model.name": "/no/such/model"}),
    ("unknown tiny family", {"model.name": "tiny:transformerxl"}),
    ("unknown dtype", {"model.dtype": "float8"}),
    ("unknown benchmark", {"data.benchmark": "glue"}),
    ("unknown built-in task", {"data.order": ["Stance-Policy", "Poetry"]}),
    ("trace without a folder", {"data.benchmark": "trace", "data.order": None}),
    ("trace folder missing", {"data.benchmark": "trace", "data.data_dir": "/no/such/dir", "data.order": None}),
    ("train_size zero", {"data.train_size": 0}),
    ("unknown eval split", {"eval.split": "train"}),
    ("unknown text encoding", {"data.encoding": "klingon-8"}),
    ("eval batch zero", {"eval.batch_size": 0}),
    ("unknown method options", {"method_options.sgd": {"lr": 1}}),
    ("options for a method without any", {"method_options.lora": {"lam": 1}}),
    ("negative EWC lambda", {"method_options.ewc.lam": -1, "methods": ["ewc"]}),
    ("GEM without memory", {"method_options.gem.memory_per_task": 0, "methods": ["gem"]}),
    ("replay fraction 2", {"method_options.replay.fraction": 2, "methods": ["replay"]}),
    ("unknown match_activated kind", {"match_activated": "dense"}),
    ("seed not an integer", {"seed": "abc"}),
    ("analysis bins 1", {"analysis.bins": 1}),
    ("progress not a boolean", {"progress": "sometimes"}),
]

# (what is wrong, task folder, file, bytes written over it); None deletes the file.
DATA = [
    ("invalid JSON", "C-STANCE", "train.json", b'[{"prompt": "a", "answer": '),
    ("an object, not a list", "C-STANCE", "train.json", b'{"prompt": "a", "answer": "b"}'),
    ("a record that is a string", "C-STANCE", "train.json", b'[{"prompt": "a", "answer": "b"}, "oops"]'),
    ("a record without answer", "C-STANCE", "test.json", b'[{"prompt": "a"}]'),
    ("a numeric prompt", "ScienceQA", "train.json", b'[{"prompt": 12, "answer": "A"}]'),
    ("an empty file", "Py150", "test.json", b""),
    ("only whitespace", "Py150", "train.json", b"  \n "),
    ("an empty list", "20Minuten", "train.json", b"[]"),
    ("a missing split", "20Minuten", "test.json", None),
    ("a bad task.json", "C-STANCE", "task.json", b'{"scorer": "bleu"}'),
    ("a template with a nested field", "C-STANCE", "task.json", b'{"prompt_template": "{prompt:{missing}}"}'),
    ("a template padding to 1e9", "C-STANCE", "task.json", b'{"prompt_template": "{prompt:>999999999}"}'),
    ("a template with a conversion", "C-STANCE", "task.json", b'{"prompt_template": "{prompt!r}"}'),
    ("task.json not JSON", "C-STANCE", "task.json", b"scorer: accuracy"),
    (
        "latin-1 bytes in UTF-8 JSON",
        "C-STANCE",
        "train.json",
        '[{"prompt": "Café?", "answer": "b"}]'.encode("latin-1"),
    ),
    ("a zero max_new_tokens", "C-STANCE", "task.json", b'{"scorer": "accuracy", "max_new_tokens": 0}'),
]


def write_config(path: Path, changes: dict) -> Path:
    config = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        *parents, last = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    path.write_text(yaml.safe_dump(config))
    return path


def assert_clean_refusal(args: list[str], output_dir: Path, capsys) -> str:
    code = main(["run", *args, f"--set=output_dir={output_dir}", "--set=name=fuzz"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mhmoe: error: ") and "Traceback" not in err, err
    assert not (output_dir / "fuzz").exists()  # nothing left behind
    return lines[0]


@pytest.mark.parametrize(("case", "changes"), CONFIGS, ids=[c for c, _ in CONFIGS])
def test_malformed_config_is_refused(case, changes, tmp_path, capsys):
    config = write_config(tmp_path / "config.yaml", changes)
    assert_clean_refusal([str(config)], tmp_path / "runs", capsys)


@pytest.mark.parametrize(("case", "task", "file", "content"), DATA, ids=[c for c, *_ in DATA])
def test_malformed_data_is_refused_naming_the_file(case, task, file, content, tmp_path, capsys):
    root = tmp_path / "trace"
    shutil.copytree(FIXTURE, root)
    target = root / task / file
    if content is None:
        target.unlink()
    else:
        target.write_bytes(content)
    order = ["C-STANCE", "ScienceQA", "Py150", "20Minuten"]
    config = write_config(
        tmp_path / "config.yaml", {"data.benchmark": "trace", "data.data_dir": str(root), "data.order": order}
    )
    message = assert_clean_refusal([str(config)], tmp_path / "runs", capsys)
    assert task in message


def test_bad_config_files_and_overrides(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text("train: [1, 2\n")
    (tmp_path / "list.yaml").write_text("- 1\n")
    for args in (
        [str(tmp_path / "broken.yaml")],
        [str(tmp_path / "list.yaml")],
        [str(tmp_path / "missing.yaml")],
        ["--set=train.bogus=1"],
        ["--set=train.lr"],
        ["--set=adapters.mhmoe.heads=seven"],
    ):
        assert_clean_refusal(args, tmp_path / "runs", capsys)


def test_missing_model_folder_is_named_as_such_not_as_a_bad_hub_name(tmp_path, capsys):
    config = write_config(tmp_path / "config.yaml", {})
    message = assert_clean_refusal([str(config), "--model", "/no/such/folder"], tmp_path / "runs", capsys)
    assert "'/no/such/folder'" in message and "no such folder exists" in message, message
    assert "not the name of a cached Hugging Face model" in message and "Repo id" not in message, message


def test_the_readme_states_how_many_hostile_inputs_are_tested():
    from test_checkpoint_trust import TAMPERED
    from test_hostile_adapter_files import HOSTILE

    count = len(CONFIGS) + len(DATA) + len(TAMPERED) + len(HOSTILE)
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"{count} malformed or hostile inputs are tested" in readme, count
