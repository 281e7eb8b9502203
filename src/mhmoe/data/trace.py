"""Read tasks in TRACE's on-disk format: `<root>/<Task>/{train,eval,test}.json`, each a JSON list of
`{"prompt": str, "answer": str}` objects (extra fields, e.g. ground-truth `domain` and `label`, are kept
as features for the analysis tools). A split may also be `.jsonl`, `.csv` or `.parquet` (data/records.py).

Everything is validated on load, so a malformed file stops a run before training with one line naming the
file and the record. An optional `<root>/<Task>/task.json` names the scorer and the generation length, and
which fields make an example (`prompt_field`, `answer_field`, or a `prompt_template` over the record's
fields); without it, TRACE's own task names decide (see TRACE_SCORERS and TRACE_MAX_NEW_TOKENS).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from string import Formatter
from typing import Any

from mhmoe.data.records import RecordError, read_records, split_file
from mhmoe.errors import MhmoeError
from mhmoe.metrics.text import SCORERS

SPLITS = ("train", "eval", "test")

# TRACE's scorers by task name (https://arxiv.org/abs/2310.06762, its evaluation code's choices).
TRACE_SCORERS = {
    "C-STANCE": "accuracy",
    "FOMC": "accuracy",
    "NumGLUE-cm": "accuracy",
    "NumGLUE-ds": "accuracy",
    "ScienceQA": "first_char",
    "MeetingBank": "rouge_l",
    "Py150": "py150_similarity",
    "20Minuten": "sari",
}


# TRACE's generation length: its inference (inference/infer_single.py and infer_multi.py in
# github.com/BeyonderXX/TRACE) calls model.generate(max_new_tokens=args.max_ans_len) for every task, and its
# scripts (scripts/infer_seq.sh, scripts/inference.sh) pass --max_ans_len 512. One length for all eight tasks:
# generation stops at the end-of-sequence token, so short answers stay short, and long ones (MeetingBank,
# Py150, 20Minuten) are not cut.
TRACE_MAX_NEW_TOKENS = 512

# TRACE's default stream order (the research's main order).
TRACE_ORDER = ["C-STANCE", "FOMC", "MeetingBank", "Py150", "ScienceQA", "NumGLUE-cm", "NumGLUE-ds", "20Minuten"]


class DataError(MhmoeError):
    """A task folder or file that cannot be used; the message names the file and, where one is at fault, the record."""


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str
    features: dict[str, str] = field(default_factory=dict)


@dataclass
class Task:
    name: str
    scorer: str
    max_new_tokens: int
    splits: dict[str, list[Example]]
    options: list[str] | None = None
    """The task's fixed answer set, where it declares one (the CL Benchmark's labels); option scoring uses it."""

    def split(self, name: str) -> list[Example]:
        return self.splits[name]


SPEC_FIELDS = ("scorer", "max_new_tokens", "prompt_field", "answer_field", "prompt_template")


@dataclass(frozen=True)
class TaskSpec:
    """A task folder's task.json: how to score it, how long to generate, and which fields make an example."""

    scorer: str
    max_new_tokens: int
    prompt_field: str = "prompt"
    """The record field that is the prompt (unless prompt_template builds it)."""
    answer_field: str = "answer"
    """The record field that is the reference answer (a string)."""
    prompt_template: str | None = None
    """A str.format template over the record's fields, e.g. "{instruction}\\n{input}", that builds the prompt."""

    def template_fields(self) -> list[str]:
        return [name for _, name, _, _ in Formatter().parse(self.prompt_template or "") if name is not None]

    def example(self, record: dict[str, Any], path: Path, index: int) -> Example:
        """The record as an Example, or a DataError naming the file, the record and the field."""
        if self.prompt_template is not None:
            for name in self.template_fields():
                if name not in record:
                    raise DataError(f"{path}: record {index} has no field '{name}' that prompt_template uses")
                if not isinstance(record[name], (str, int, float)) or isinstance(record[name], bool):
                    kind = type(record[name]).__name__
                    raise DataError(
                        f"{path}: record {index} field '{name}' is a {kind}, which prompt_template cannot use"
                    )
            prompt = self.prompt_template.format_map(record)
        else:
            prompt = _string_field(record, self.prompt_field, path, index)
        if not prompt.strip():  # generation from an empty prompt has nothing to condition on (and crashed)
            raise DataError(f"{path}: record {index} has an empty prompt")
        answer = _string_field(record, self.answer_field, path, index)
        used = {self.prompt_field, self.answer_field}
        return Example(prompt, answer, {k: str(v) for k, v in record.items() if k not in used})


def _string_field(record: dict[str, Any], key: str, path: Path, index: int) -> str:
    if key not in record:
        raise DataError(f"{path}: record {index} has no '{key}' field")
    if not isinstance(record[key], str):
        raise DataError(f"{path}: record {index} field '{key}' is a {type(record[key]).__name__}, not a string")
    return record[key]


def _read_examples(folder: Path, split: str, spec: TaskSpec, encoding: str) -> list[Example]:
    try:
        path = split_file(folder, split)
        records = read_records(path, encoding)
    except RecordError as err:
        raise DataError(str(err)) from None
    return [spec.example(record, path, index) for index, record in enumerate(records)]


def read_json(path: Path) -> Any:
    """A small settings file's JSON value, or a DataError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: invalid JSON ({err})") from None


def _task_spec(folder: Path) -> TaskSpec:
    spec_path = folder / "task.json"
    spec = {}
    if spec_path.is_file():
        spec = read_json(spec_path)
        if not isinstance(spec, dict):
            raise DataError(f"{spec_path}: expected a JSON object of settings")
        unknown = sorted(set(spec) - set(SPEC_FIELDS))
        if unknown:
            raise DataError(f"{spec_path}: unknown field '{unknown[0]}' (known: {list(SPEC_FIELDS)})")
    scorer = spec.get("scorer", TRACE_SCORERS.get(folder.name))
    if scorer is None:
        raise DataError(f"{folder}: no scorer known for task '{folder.name}'; add task.json with a 'scorer' field")
    if scorer not in SCORERS:
        raise DataError(f"{spec_path}: field 'scorer' must be one of {sorted(SCORERS)}, got {scorer!r}")
    default = TRACE_MAX_NEW_TOKENS if folder.name in TRACE_SCORERS else 64 if scorer != "accuracy" else 16
    max_new = spec.get("max_new_tokens", default)
    if not isinstance(max_new, int) or isinstance(max_new, bool) or max_new < 1:
        raise DataError(f"{spec_path}: field 'max_new_tokens' must be a positive integer, got {max_new!r}")
    for key in ("prompt_field", "answer_field", "prompt_template"):
        if key in spec and (not isinstance(spec[key], str) or not spec[key]):
            raise DataError(f"{spec_path}: field '{key}' must be a non-empty string, got {spec[key]!r}")
    fields = {k: spec[k] for k in ("prompt_field", "answer_field", "prompt_template") if k in spec}
    task_spec = TaskSpec(scorer, max_new, **fields)
    try:
        parts = list(Formatter().parse(task_spec.prompt_template or ""))
        names = task_spec.template_fields()
    except ValueError as err:
        raise DataError(f"{spec_path}: field 'prompt_template' is not a valid template ({err})") from None
    formatted = [f"{{{n}{'!' + c if c else ''}:{s}}}" for _, n, s, c in parts if n is not None and (s or c)]
    if formatted:  # a format spec can nest fields or ask for a padding width that exhausts memory
        raise DataError(
            f"{spec_path}: field 'prompt_template' may only hold plain fields like {{input}}, without conversion or "
            f"format spec; got {formatted[0][:40]}"
        )
    bad = [n for n in names if not n or not n.isidentifier()]
    if bad:
        raise DataError(
            f"{spec_path}: field 'prompt_template' may only name record fields, like {{input}}; got {{{bad[0]}}}"
        )
    return task_spec


def capped(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    """At most `limit` of the examples: a seeded sample, the same for a seed every time."""
    if limit is None or len(examples) <= limit:
        return examples
    return random.Random(seed).sample(examples, limit)


def load_task(
    folder: str | Path, *, limits: dict[str, int | None] | None = None, seed: int = 0, encoding: str = "utf-8"
) -> Task:
    """Load and validate one task folder; `limits` caps examples per split (a seeded sample); text files must
    decode as `encoding`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: task folder not found")
    spec = _task_spec(folder)
    limits = limits or {}
    splits = {s: capped(_read_examples(folder, s, spec, encoding), limits.get(s), seed) for s in SPLITS}
    return Task(folder.name, spec.scorer, spec.max_new_tokens, splits)


def load_stream(root: str | Path, order: list[str], **kwargs) -> list[Task]:
    """Load the tasks of a stream in order, validating every file before any is used."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    if not order:
        raise DataError(f"{root}: the stream names no tasks")
    return [load_task(root / name, **kwargs) for name in order]
