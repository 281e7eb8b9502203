"""What a run folder's results.json holds, written and read here only.

Three shapes, each tagged with `shape` and the `schema` it was written under:
- `RunResults` ("run"): one seed's stream, every entry's R, L and metrics (results of a single-seed folder);
- `SeedsSummary` ("seeds"): the intervals over seeds, each seed's RunResults inside (a multi-seed folder);
- `ConditionsSummary` ("conditions"): the entries side by side over orders or modes (a repeated run's top).
An entry's own result (R, L, metrics, router facts) stays a mapping inside them, keyed as the metrics name it.
Files from before the tags (schema 1) are recognised by their keys; a newer schema is refused in one line.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mhmoe.errors import CheckpointError
from mhmoe.files import write_json

SCHEMA = 2
"""2: the `shape`/`schema` tags, RunResults' `complete` flag and provenance; 1: untagged files of earlier
versions."""


@dataclass
class RunResults:
    """One seed's run: the untrained row, then each entry's result as it finishes."""

    tasks: list[str]
    model: str
    seed: int
    base: list[float]
    """R's base row: each task's score before any training."""
    base_se: list[float]
    base_L: list[float]
    majority: list[float]
    """Each task's score of always giving its most common test answer."""
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each finished entry's result, by entry name, in training order."""
    seconds: float = 0.0
    complete: bool = False
    """Every entry has finished and the report is written."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """What produced it: the code digest, library versions, thread count and a hash of the settings; results
    that differ in any of these are not compared without a reason."""


@dataclass
class SeedsSummary:
    """A run over several seeds: each entry's metrics as intervals over seeds, paired against the reference."""

    tasks: list[str]
    model: str
    seeds: list[int]
    reference: str | None
    summary: dict[str, Any]
    paired: dict[str, Any]
    per_seed: dict[str, dict[str, Any]]
    """Each seed's results.json (a RunResults mapping), by seed."""


@dataclass
class ConditionsSummary:
    """A run repeated over orders or modes: each condition's SeedsSummary parts and how the gaps move."""

    model: str
    kind: str
    """What varies: 'order' or 'mode'."""
    reference: str | None
    metrics: list[str]
    conditions: dict[str, Any]
    agreement: dict[str, Any]
    gap_change: dict[str, Any]


SHAPES = {"run": RunResults, "seeds": SeedsSummary, "conditions": ConditionsSummary}
Results = RunResults | SeedsSummary | ConditionsSummary


def shape_of(results: Results) -> str:
    return next(name for name, cls in SHAPES.items() if isinstance(results, cls))


def to_dict(results: Results) -> dict[str, Any]:
    """The JSON mapping of any results, tagged with its shape and schema."""
    return {"shape": shape_of(results), "schema": SCHEMA, **dataclasses.asdict(results)}


def _legacy_shape(data: dict[str, Any]) -> str | None:
    """The shape of an untagged (schema 1) results.json, from the keys only that shape has."""
    if "conditions" in data:
        return "conditions"
    if "per_seed" in data:
        return "seeds"
    return "run" if "methods" in data else None


def from_dict(data: dict[str, Any], source: str = "results") -> Results:
    """Results back from their JSON mapping (any schema up to SCHEMA), or a one-line refusal naming `source`."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: not a results mapping")
    schema = data.get("schema", 1)
    if not isinstance(schema, int) or schema > SCHEMA:
        raise CheckpointError(f"{source}: results schema {schema!r} is newer than this mhmoe reads ({SCHEMA})")
    shape = data.get("shape") if schema > 1 else _legacy_shape(data)
    if shape not in SHAPES:
        raise CheckpointError(f"{source}: not a results file of any known shape (schema {schema})")
    cls = SHAPES[shape]
    names = {f.name for f in dataclasses.fields(cls)}
    fields = {k: v for k, v in data.items() if k in names}
    if shape == "run" and schema == 1:
        fields.setdefault("complete", False)
    try:
        return cls(**fields)
    except TypeError as err:
        raise CheckpointError(f"{source}: incomplete {shape} results (schema {schema}): {err}") from None


def read_results(path: Path) -> Results:
    """A results.json, typed by its shape; a missing, unreadable or newer file is a one-line error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found; is this a run folder written by `mhmoe run`?") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable ({err})") from None
    return from_dict(data, str(path))


def write_results(path: Path, results: Results) -> None:
    write_json(path, to_dict(results))
