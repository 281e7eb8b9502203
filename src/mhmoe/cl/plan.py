"""A run's plan, resolved once before anything trains: its entries, the process checks, every seed's stream,
and the tree of cells (a condition, then a seed), each with its folder.

Everything that can be wrong with the settings or the data is found here, before the model loads or a folder
is written. The plan's fingerprint (resolved settings, model, seeds, code and library versions) is stored in
the run folder; resuming resolves the saved config again and refuses to continue a run whose fingerprint
differs, naming what changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from accelerate.utils import broadcast_object_list

from mhmoe.cl.claims_report import sequential_judge
from mhmoe.cl.entries import Entry, resolve_entries
from mhmoe.cl.option_scoring import check_option_scoring
from mhmoe.cl.results import SeedsSummary
from mhmoe.cl.run_folder import RunFolder, flat_settings
from mhmoe.config import load_config
from mhmoe.data.stream import load_tasks
from mhmoe.data.trace import Task
from mhmoe.distributed import process_state
from mhmoe.errors import CheckpointError, ConfigError
from mhmoe.files import write_json
from mhmoe.settings import RunConfig
from mhmoe.variants import NAME_PATTERN


@dataclass
class SeedCell:
    """One seed's complete run of every entry: the leaf of the plan, a single-seed run folder."""

    config: RunConfig
    """The settings it runs with: `seed` is this cell's seed, `seeds` empty."""
    folder: RunFolder
    tasks: list[Task]


@dataclass
class SeedsCell:
    """Several seeds of one stream (seed-<s>/ folders), summarised over seeds at its top."""

    config: RunConfig
    folder: RunFolder
    seeds: list[SeedCell]


@dataclass
class ConditionsCell:
    """The run repeated over orders or modes (<condition>/ folders), compared at its top."""

    config: RunConfig
    folder: RunFolder
    kind: str
    """What varies: 'order' or 'mode'."""
    conditions: dict[str, SeedCell | SeedsCell]


Cell = SeedCell | SeedsCell | ConditionsCell


@dataclass
class RunPlan:
    config: RunConfig
    root: Cell
    entries: list[Entry]
    """Every row of the run (methods, then variants), resolved but not yet matched to a model."""
    fingerprint: dict[str, Any]


def check_processes(config: RunConfig, entries: list[Entry]) -> None:
    """Every process must get an equal share of each optimizer step's examples."""
    world = process_state().num_processes
    per_step = config.train.batch_size * config.train.grad_accum
    if per_step % world:
        raise ConfigError(
            f"train.batch_size * train.grad_accum = {per_step} examples per step do not split evenly over "
            f"{world} processes"
        )
    for entry in entries:
        if world > 1 and entry.adapter.per_task:
            raise ConfigError(
                f"method '{entry.method}' changes which parameters train between tasks, which DDP cannot follow"
            )


def _seed_cells(config: RunConfig, folder: RunFolder, name: str) -> SeedCell | SeedsCell:
    """One stream's seeds: the folder itself for one seed, else seed-<s>/ folders under it (with the seeds a
    sequential run has added so far)."""
    seeds = config.seed_list() + added_seeds(folder)
    if len(seeds) == 1:
        single = dataclasses.replace(config, seed=seeds[0], seeds=[], until_resolved=None)
        return SeedCell(single, folder, _checked_tasks(single))
    cells = []
    for seed in seeds:
        single = dataclasses.replace(config, seed=seed, seeds=[], until_resolved=None, name=f"{name}/seed-{seed}")
        cells.append(SeedCell(single, folder.seed(seed), _checked_tasks(single)))
    return SeedsCell(config, folder, cells)


def _checked_tasks(config: RunConfig) -> list[Task]:
    """One seed's tasks, read and checked against how they will be scored."""
    tasks = load_tasks(config.data, config.seed)
    if config.eval.scoring == "options":
        check_option_scoring(tasks)
    return tasks


def _cells(config: RunConfig, folder: RunFolder) -> Cell:
    """The tree of cells under `folder`; every seed's data is read (and checked) here."""
    conditions = config.conditions()
    if None in conditions:
        return _seed_cells(config, folder, config.name or folder.path.name)
    children = {}
    for name, condition in conditions.items():
        condition = dataclasses.replace(condition, name=f"{folder.path.name}/{name}")
        children[name] = _seed_cells(condition, folder.condition(name), condition.name)
    return ConditionsCell(config, folder, "order" if config.orders else "mode", children)


def _code_digest() -> str:
    """A digest of the package's own source files: two runs with the same digest ran the same code."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


UNCHECKED = ("name", "output_dir", "progress", "log_with")
"""Settings a resumed run may differ in: where and how it reports, not what it computes."""


def _computing_settings(config: RunConfig) -> dict[str, Any]:
    """The flat settings that decide what a run computes (all but UNCHECKED)."""
    return {k: v for k, v in flat_settings(config.to_dict()).items() if k.split(".")[0] not in UNCHECKED}


def fingerprint(config: RunConfig) -> dict[str, Any]:
    """What must stay the same for a resumed run to end with the results of an uninterrupted one."""
    return {
        "settings": _computing_settings(config),
        "model": config.model.name,
        "seeds": config.seed_list(),
        "code": _code_digest(),
        "versions": {name: metadata.version(name) for name in ("torch", "transformers", "accelerate")},
        "python": sys.version.split()[0],
    }


def checkpoint_owner(config: RunConfig) -> dict[str, Any]:
    """Whose checkpoints a seed's run may continue from: its own seed, model and settings."""
    settings = json.dumps(_computing_settings(config), sort_keys=True, default=str)
    digest = hashlib.sha256(settings.encode()).hexdigest()[:16]
    return {"seed": config.seed, "model": config.model.name, "settings": digest}


def provenance(plan_fingerprint: dict[str, Any]) -> dict[str, Any]:
    """What a result records of what produced it (the fingerprint without the settings, which config.yaml holds,
    plus their hash and the thread count in use)."""
    import torch

    compared = {k: v for k, v in plan_fingerprint["settings"].items() if k not in ("seed", "seeds")}
    settings = json.dumps(compared, sort_keys=True).encode()  # seeds of one experiment may run apart
    kept = {k: v for k, v in plan_fingerprint.items() if k not in ("settings", "seeds")}
    return kept | {"settings_sha256": hashlib.sha256(settings).hexdigest()[:16], "threads": torch.get_num_threads()}


def differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, each as 'key: saved -> now'."""
    found = []
    for key in sorted(set(saved) | set(now)):
        before, after = saved.get(key), now.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            found += [f"{key}.{d}" for d in differences(before, after)]
        elif before != after:
            found.append(f"{key}: {json.dumps(before)} -> {json.dumps(after)}")
    return found


def new_folder_path(config: RunConfig, preset: str | None) -> RunFolder:
    """A fresh run folder's path (the first process names it: the name may hold the time); nothing is created."""
    if config.name is not None and not NAME_PATTERN.fullmatch(config.name):
        raise ConfigError(
            f"run config: field 'name' {config.name!r} must be letters, digits and . _ + - (it names a folder "
            "inside output_dir)"
        )
    name = config.name or f"{preset or '-'.join(config.entry_names())}-{datetime.now():%Y%m%d-%H%M%S}"
    if process_state().num_processes > 1:
        name = broadcast_object_list([name])[0]
    folder = RunFolder(Path(config.output_dir) / name)
    existing = next(p for p in (folder.path, *folder.path.parents) if p.is_dir())
    if not os.access(existing, os.W_OK | os.X_OK):  # found now, not after the model has loaded
        raise ConfigError(f"{existing}: cannot be written; choose another output_dir (--set output_dir=...)")
    if folder.path.exists() and not folder.path.is_dir():
        raise ConfigError(f"{folder.path}: exists and is not a folder; choose another name (--set name=...)")
    if folder.path.exists() and any(folder.path.iterdir()):
        raise ConfigError(f"{folder.path}: run folder exists and is not empty; choose another name (--set name=...)")
    return folder


def resolve(
    config: RunConfig | None = None,
    *,
    preset: str | None = None,
    resume: str | Path | None = None,
    add_seeds: list[int] | None = None,
) -> RunPlan:
    """The plan of a new run of `config`, or of continuing the run folder `resume` (with `add_seeds`: the one
    change a resume may make, more seeds of the same settings)."""
    if resume is not None:
        return _resume_plan(RunFolder(Path(resume)), add_seeds or [])
    entries = resolve_entries(config)
    check_processes(config, entries)
    folder = new_folder_path(config, preset)
    return RunPlan(config, _cells(config, folder), entries, fingerprint(config))


def _resume_plan(folder: RunFolder, add_seeds: list[int]) -> RunPlan:
    if not folder.config.is_file():
        raise CheckpointError(f"{folder.config}: not found; --resume needs a run folder written by `mhmoe run`")
    config = load_config(folder.config)
    entries = resolve_entries(config)
    check_processes(config, entries)
    plan = RunPlan(config, _cells(config, folder), entries, fingerprint(config))
    if folder.plan.is_file():
        saved = json.loads(folder.plan.read_text(encoding="utf-8"))
        changed = differences(saved, plan.fingerprint)
        if changed:
            raise CheckpointError(
                f"{folder.plan}: the run was started with other settings or code; resuming would mix results "
                f"({'; '.join(changed[:3])}{'; ...' if len(changed) > 3 else ''})"
            )
    if add_seeds:  # only once the run is known to be continued as it was started
        _check_and_record_added(plan, add_seeds)
        plan = RunPlan(config, _cells(config, folder), entries, plan.fingerprint)
    if folder.finished and not config.until_resolved and cell_finished(plan.root):
        raise CheckpointError(f"{folder.path}: nothing to resume (the run has finished)")
    return plan  # a run stopped before its first checkpoint starts again in its folder


def added_seeds(folder: RunFolder) -> list[int]:
    """The seeds a sequential run (until_resolved) has added after its configured ones, in the order run."""
    path = folder.path / ADDED_SEEDS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


ADDED_SEEDS = "added_seeds.json"


def _check_and_record_added(plan: RunPlan, seeds: list[int]) -> None:
    """Refuse seeds a run cannot take, else record them in added_seeds.json of every stream's folder, where the
    plan reads them (the run's config.yaml and fingerprint stay as they were)."""
    where = plan.root.folder.path
    if plan.config.until_resolved:
        raise ConfigError(f"{where}: a run that adds seeds until its claims resolve chooses its own seeds")
    streams = list(plan.root.conditions.values()) if isinstance(plan.root, ConditionsCell) else [plan.root]
    if not isinstance(streams[0], SeedsCell):
        raise ConfigError(
            f"{where}: a one-seed run's folder is that seed's run; run the new seeds under another name and "
            "collect both (mhmoe report --collect)"
        )
    planned = {cell.config.seed for cell in streams[0].seeds}
    repeated = sorted(planned & set(seeds)) or sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"--add-seeds: seed(s) {repeated} already in the run {where}")
    if process_state().is_main_process:
        for stream in streams:
            write_json(stream.folder.path / ADDED_SEEDS, added_seeds(stream.folder) + seeds)
    process_state().wait_for_everyone()


def cell_finished(cell: Cell) -> bool:
    """The cell's results are complete for the seeds it now plans (a sequential run may have added some)."""
    if not cell.folder.finished:
        return False
    if isinstance(cell, SeedsCell):
        return cell.folder.read().seeds == [seed.config.seed for seed in cell.seeds]
    if isinstance(cell, ConditionsCell):
        return all(cell_finished(child) for child in cell.conditions.values())
    return True


def next_seeds(plan: RunPlan, results: Any) -> RunPlan | None:
    """The plan with the next group of seeds, when the run adds seeds until its claims resolve and they have not
    (None otherwise); the added seeds are recorded in the run folder, so a resumed run plans them too."""
    config, root = plan.config, plan.root
    if not config.until_resolved or not isinstance(results, SeedsSummary) or not isinstance(root, SeedsCell):
        return None
    per_seed = {int(seed): run for seed, run in results.per_seed.items()}
    if sequential_judge(config.declared_claims(), per_seed, config.looks()).stop:
        return None
    done = [cell.config.seed for cell in root.seeds]
    wanted = next(n for n in config.looks() if n > len(done)) - len(done)
    new = [max(done) + 1 + i for i in range(wanted)]
    if process_state().is_main_process:
        write_json(root.folder.path / ADDED_SEEDS, added_seeds(root.folder) + new)
    process_state().wait_for_everyone()
    return RunPlan(config, _cells(config, root.folder), plan.entries, plan.fingerprint)


def start(plan: RunPlan) -> None:
    """Create the plan's top folder with its config.yaml and fingerprint (a new run only)."""
    state = process_state()
    folder = plan.root.folder
    if state.is_main_process:
        folder.path.parent.mkdir(parents=True, exist_ok=True)
        try:  # one mkdir that fails if the folder exists: two runs started at once cannot share it
            folder.path.mkdir()
        except FileExistsError:
            if any(folder.path.iterdir()):
                raise ConfigError(
                    f"{folder.path}: another run has just taken this folder; choose another name"
                ) from None
    folder.begin(plan.config)
    if state.is_main_process:
        write_json(folder.plan, plan.fingerprint)
    state.wait_for_everyone()
