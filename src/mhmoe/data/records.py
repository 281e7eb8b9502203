"""A task split's raw records, from whichever tabular file holds it: `<split>.json` (a JSON list of objects),
`<split>.jsonl` (one object per line), `<split>.csv` (a header row; read with the standard library's csv)
or `<split>.parquet` (read with pyarrow). Every problem is one line naming the file and, where one is at
fault, the record (its 0-based index; for JSONL and CSV the line too).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from mhmoe.errors import MhmoeError

FORMATS = (".json", ".jsonl", ".csv", ".parquet")


class RecordError(MhmoeError):
    """A split file that cannot be read as records (the data loader re-raises it as its DataError)."""


def split_file(folder: Path, split: str) -> Path:
    """The one file holding `split` in `folder`, whatever its format."""
    found = [folder / f"{split}{suffix}" for suffix in FORMATS if (folder / f"{split}{suffix}").is_file()]
    if not found:
        raise RecordError(f"{folder / split}.json: file not found (also looked for {', '.join(FORMATS[1:])})")
    if len(found) > 1:
        raise RecordError(f"{folder}: split '{split}' is in several files ({', '.join(p.name for p in found)})")
    return found[0]


def _text(path: Path, encoding: str) -> str:
    try:
        raw = path.read_bytes().decode(encoding)
    except UnicodeDecodeError as err:  # never turned into U+FFFD: the text would change without a word
        raise RecordError(
            f"{path}: not valid {encoding} at byte {err.start} ({err.reason}); if the file uses another encoding, "
            "set data.encoding (e.g. latin-1)"
        ) from None
    if not raw.strip():
        raise RecordError(f"{path}: file is empty")
    return raw


def _json(path: Path, encoding: str) -> list[Any]:
    try:
        records = json.loads(_text(path, encoding))
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: invalid JSON at line {err.lineno} column {err.colno} ({err.msg})") from None
    if not isinstance(records, list):
        raise RecordError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    return records


def _jsonl(path: Path, encoding: str) -> list[Any]:
    records = []
    for number, line in enumerate(_text(path, encoding).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise RecordError(f"{path}: record {len(records)} (line {number}) is not JSON ({err.msg})") from None
    return records


def _csv(path: Path, encoding: str) -> list[Any]:
    reader = csv.DictReader(_text(path, encoding).splitlines())
    if not reader.fieldnames:
        raise RecordError(f"{path}: no header row")
    records = []
    for index, row in enumerate(reader):
        if None in row or any(value is None for value in row.values()):  # too many cells, or too few
            cells = (
                len(reader.fieldnames) + len(row[None]) if None in row else sum(v is not None for v in row.values())
            )
            raise RecordError(
                f"{path}: record {index} (line {reader.line_num}) has {cells} cells where the header has "
                f"{len(reader.fieldnames)}"
            )
        records.append(row)
    return records


def _parquet(path: Path, encoding: str) -> list[Any]:
    del encoding  # Parquet stores its strings as UTF-8 itself
    try:
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise RecordError(f"{path}: not a readable Parquet file ({str(err).splitlines()[0]})") from None


READERS = {".json": _json, ".jsonl": _jsonl, ".csv": _csv, ".parquet": _parquet}


def read_records(path: Path, encoding: str = "utf-8") -> list[dict[str, Any]]:
    """The file's records, each a mapping of field to value; at least one. Text files must decode as
    `encoding`, or the error names the byte where they do not."""
    records = READERS[path.suffix](path, encoding)
    if not records:
        raise RecordError(
            f"{path}: {'the list of records is empty' if path.suffix == '.json' else 'holds no records'}"
        )
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise RecordError(f"{path}: record {index} is a {type(record).__name__}, expected an object")
    return records
