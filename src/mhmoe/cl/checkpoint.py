"""Checkpoints of a run in progress, written so that a kill at any instant leaves the last one whole.

A checkpoint is a folder `checkpoints/<n>/` holding the adapter (safetensors), the training state
(optimizer, scheduler, the method's hook state and the RNG, read back with `torch.load(weights_only=True)`,
so loading never runs code) and `state.json`: where the run stands, R so far, and the SHA-256 of the other
files. `checkpoints/LATEST` names the newest complete folder and is replaced atomically only after that
folder is fully written; older folders are removed afterwards. A kill mid-checkpoint therefore leaves
LATEST on the previous one, and any file changed or cut short fails its hash and is refused.

The hashes catch corruption, not tampering, so every field of state.json is checked before use as well: LATEST
names a checkpoint folder of this run and nothing else, positions and sizes are non-negative integers and the
metrics length is within metrics.jsonl, and the checkpoint's owner (seed, model, settings) must be the run that
loads it: a checkpoint copied from another run is refused rather than continued.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mhmoe.errors import CheckpointError
from mhmoe.files import atomic_write, write_json, write_text

FOLDER = "checkpoints"
LATEST = "LATEST"
FORMAT_VERSION = 1
FOLDER_NAME = re.compile(r"\d{6}")
FILES = ("adapter.safetensors", "training.pt")


@dataclass(frozen=True)
class Position:
    """Where a run stands: method and task indices, and optimizer steps done in that task.

    step 0 means the task has not started; step == the task's steps means it is trained but not yet scored.
    """

    method: int
    task: int
    step: int


@dataclass
class Checkpoint:
    position: Position
    results: dict[str, Any]
    """results.json as it stands (the untrained row and the finished methods)."""
    rows: dict[str, Any] = field(default_factory=dict)
    """The current method's results so far: rows of R, their errors, rows of L, router gradients."""
    seconds: dict[str, float] = field(default_factory=dict)
    """The current method's training and evaluation time so far."""
    metrics_bytes: int = 0
    """Length of metrics.jsonl at this point; a resumed run cuts the file back to it."""
    adapter: dict[str, torch.Tensor] | None = None
    training: dict[str, Any] | None = None
    """Hook state, RNG and, mid-task, the optimizer and scheduler states."""
    owner: dict[str, Any] = field(default_factory=dict)
    """The run that wrote it (seed, model, settings hash): only that run may continue from it."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(run_dir: Path, checkpoint: Checkpoint) -> Path:
    """Write a new checkpoint folder, point LATEST at it, then remove older ones."""
    root = run_dir / FOLDER
    root.mkdir(exist_ok=True)
    numbers = [int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    folder = root / f"{max(numbers, default=0) + 1:06d}"
    folder.mkdir()
    files = {}
    if checkpoint.adapter is not None:
        tensors = {n: t.detach().contiguous().cpu() for n, t in checkpoint.adapter.items()}
        atomic_write(folder / "adapter.safetensors", lambda p: save_file(tensors, p))
        files["adapter.safetensors"] = _sha256(folder / "adapter.safetensors")
    if checkpoint.training is not None:
        atomic_write(folder / "training.pt", lambda p: torch.save(checkpoint.training, p))
        files["training.pt"] = _sha256(folder / "training.pt")
    state = {
        "format_version": FORMAT_VERSION,
        "position": asdict(checkpoint.position),
        "results": checkpoint.results,
        "rows": checkpoint.rows,
        "seconds": checkpoint.seconds,
        "metrics_bytes": checkpoint.metrics_bytes,
        "owner": checkpoint.owner,
        "files": files,
    }
    write_json(folder / "state.json", state)
    write_text(root / LATEST, folder.name + "\n")
    for old in root.iterdir():
        if old != folder and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return folder


def latest_folder(run_dir: Path) -> Path | None:
    pointer = run_dir / FOLDER / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8", errors="replace").strip()
    if not FOLDER_NAME.fullmatch(name):
        raise CheckpointError(f"{pointer}: names {name[:40]!r}, not a checkpoint folder of this run (six digits)")
    folder = run_dir / FOLDER / name
    if not folder.is_dir():
        raise CheckpointError(f"{pointer}: names '{folder.name}', which does not exist")
    return folder


def _count(state: dict[str, Any], key: str, where: Path) -> int:
    value = state.get(key)
    if type(value) is not int or value < 0:
        raise CheckpointError(f"{where}: field '{key}' is {value!r}; it must be a non-negative integer")
    return value


def _checked_state(state: Any, state_path: Path, run_dir: Path) -> tuple[Position, dict[str, str]]:
    """The position and file hashes of a state.json, every field checked against what it may hold."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{state_path}: not a JSON object")
    for key, kind in (("position", dict), ("results", dict), ("rows", dict), ("seconds", dict), ("files", dict)):
        if not isinstance(state.get(key), kind):
            raise CheckpointError(f"{state_path}: field '{key}' is missing or not a {kind.__name__}")
    position = state["position"]
    if set(position) != {"method", "task", "step"}:
        raise CheckpointError(f"{state_path}: field 'position' must hold method, task and step")
    position = Position(*(_count(position, k, state_path) for k in ("method", "task", "step")))
    logged = _count(state, "metrics_bytes", state_path)
    metrics = run_dir / "metrics.jsonl"
    size = metrics.stat().st_size if metrics.is_file() else 0
    if logged > size:
        raise CheckpointError(f"{state_path}: field 'metrics_bytes' is {logged}, past the end of {metrics} ({size})")
    files = state["files"]
    unknown = [name for name in files if name not in FILES]
    if unknown or not all(isinstance(d, str) for d in files.values()):
        raise CheckpointError(f"{state_path}: field 'files' names {unknown or 'hashes'} it may not hold")
    if not all(isinstance(s, (int, float)) for s in state["seconds"].values()):
        raise CheckpointError(f"{state_path}: field 'seconds' must map names to numbers")
    return position, files


def load_checkpoint(run_dir: Path, owner: dict[str, Any] | None = None) -> Checkpoint | None:
    """The newest complete checkpoint of a run (None if it has none), every field and file checked before use;
    with `owner`, one written by any other run is refused."""
    folder = latest_folder(run_dir)
    if folder is None:
        return None
    state_path = folder / "state.json"
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{state_path}: unreadable ({err})") from None
    position, files = _checked_state(state, state_path, run_dir)
    if owner is not None and state.get("owner") != owner:
        raise CheckpointError(
            f"{state_path}: written by another run ({_describe(state.get('owner'))}, this one is {_describe(owner)}); "
            "it is not continued"
        )
    for name, digest in files.items():
        path = folder / name
        if not path.is_file() or _sha256(path) != digest:
            raise CheckpointError(f"{path}: missing, truncated or changed since it was written (hash mismatch)")
    adapter = training = None
    try:
        if "adapter.safetensors" in files:
            adapter = load_file(folder / "adapter.safetensors")
        if "training.pt" in files:
            training = torch.load(folder / "training.pt", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise CheckpointError(f"{folder}: cannot be read safely ({str(err).splitlines()[0]})") from None
    return Checkpoint(
        position,
        state["results"],
        state["rows"],
        state["seconds"],
        state["metrics_bytes"],
        adapter,
        training,
        state.get("owner", {}),
    )


def _describe(owner: Any) -> str:
    if not isinstance(owner, dict):
        return "no owner recorded"
    return ", ".join(f"{k} {owner.get(k)}" for k in ("seed", "model", "settings"))


def clear_checkpoints(run_dir: Path) -> None:
    """Remove the checkpoints of a finished run (its results and adapters stay)."""
    shutil.rmtree(run_dir / FOLDER, ignore_errors=True)
