"""Read tasks in TRACE's on-disk format: `<root>/<Task>/{train,eval,test}.json`, each a JSON list of
`{"prompt": str, "answer": str}` objects (extra fields, e.g. ground-truth `domain` and `label`, are kept
as features for the analysis tools).

Everything is validated on load, so a malformed file stops a run before training with one line naming the
file and the record. An optional `<root>/<Task>/task.json` names the scorer and the generation length;
without it, TRACE's own task names decide (see TRACE_SCORERS and TRACE_MAX_NEW_TOKENS).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

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

    def split(self, name: str) -> list[Example]:
        return self.splits[name]


def _read_records(path: Path) -> list[Example]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes().decode("utf-8", errors="replace")  # stray non-UTF-8 bytes become U+FFFD, not a crash
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    try:
        records = json.loads(raw)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: invalid JSON at line {err.lineno} column {err.colno} ({err.msg})") from None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    if not records:
        raise DataError(f"{path}: the list of records is empty")
    examples = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{path}: record {index} is a {type(record).__name__}, expected an object")
        for key in ("prompt", "answer"):
            if key not in record:
                raise DataError(f"{path}: record {index} has no '{key}' field")
            if not isinstance(record[key], str):
                raise DataError(
                    f"{path}: record {index} field '{key}' is a {type(record[key]).__name__}, not a string"
                )
        features = {k: str(v) for k, v in record.items() if k not in ("prompt", "answer")}
        examples.append(Example(record["prompt"], record["answer"], features))
    return examples


def _task_spec(folder: Path) -> tuple[str, int]:
    spec_path = folder / "task.json"
    spec = {}
    if spec_path.is_file():
        try:
            spec = json.loads(spec_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"{spec_path}: invalid JSON ({err})") from None
    scorer = spec.get("scorer", TRACE_SCORERS.get(folder.name))
    if scorer is None:
        raise DataError(f"{folder}: no scorer known for task '{folder.name}'; add task.json with a 'scorer' field")
    if scorer not in SCORERS:
        raise DataError(f"{spec_path}: field 'scorer' must be one of {sorted(SCORERS)}, got {scorer!r}")
    default = TRACE_MAX_NEW_TOKENS if folder.name in TRACE_SCORERS else 64 if scorer != "accuracy" else 16
    max_new = spec.get("max_new_tokens", default)
    if not isinstance(max_new, int) or max_new < 1:
        raise DataError(f"{spec_path}: field 'max_new_tokens' must be a positive integer, got {max_new!r}")
    return scorer, max_new


def _cap(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    if limit is None or len(examples) <= limit:
        return examples
    return random.Random(seed).sample(examples, limit)


def load_task(folder: str | Path, *, limits: dict[str, int | None] | None = None, seed: int = 0) -> Task:
    """Load and validate one task folder; `limits` caps examples per split (a seeded sample)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: task folder not found")
    scorer, max_new = _task_spec(folder)
    limits = limits or {}
    splits = {s: _cap(_read_records(folder / f"{s}.json"), limits.get(s), seed) for s in SPLITS}
    return Task(folder.name, scorer, max_new, splits)


def load_stream(root: str | Path, order: list[str], **kwargs) -> list[Task]:
    """Load the tasks of a stream in order, validating every file before any is used."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    if not order:
        raise DataError(f"{root}: the stream names no tasks")
    return [load_task(root / name, **kwargs) for name in order]
