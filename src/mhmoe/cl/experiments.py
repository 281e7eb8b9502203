"""Experiments kept in the repository: each one's results under results/<experiment>/, from which `mhmoe
report` regenerates every table, interval and verdict the docs quote.

An experiment folder holds the run's config.yaml (its settings and declared claims) and one results.json per
seed (`seed-<s>.json`; under `<condition>/` for runs over orders or modes): R and its errors, L, the metrics,
router facts and what produced them (code digest, library versions, threads, settings hash), never adapters
or checkpoints. Seeds may come from several invocations of `mhmoe run` (for instance two one-thread runs side
by side); they are compared only when they were produced alike.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from mhmoe.cl.results import ConditionsSummary, RunResults, SeedsSummary, from_dict, to_dict
from mhmoe.cl.run_folder import RunFolder
from mhmoe.config import load_config
from mhmoe.errors import ConfigError
from mhmoe.files import write_text
from mhmoe.settings import RunConfig

COMPARED = ("code", "versions", "python", "settings_sha256", "threads", "model")
"""What two seeds' provenance must share for their numbers to be compared."""


@dataclass
class Experiment:
    name: str
    config: RunConfig
    runs: dict[str | None, dict[int, RunResults]]
    """Each condition's seeds (the condition None for a run without orders or modes)."""


def _seed_runs(folder: RunFolder) -> dict[int, RunResults]:
    """A finished run folder's results, seed by seed (the folder itself for one seed, else its seed-<s>/)."""
    results = folder.read()
    if isinstance(results, RunResults):
        return {results.seed: results}
    if isinstance(results, SeedsSummary):
        return {int(seed): from_dict(run, f"{folder.results} seed {seed}") for seed, run in results.per_seed.items()}
    raise ConfigError(f"{folder.results}: a run over conditions holds its seeds in its condition folders")


def collect(run_dir: str | Path, destination: str | Path) -> Path:
    """Add a finished run's per-seed results to the experiment folder `destination` (created with the run's
    config.yaml; a seed already there is refused rather than replaced)."""
    folder, out = RunFolder(Path(run_dir)), Path(destination)
    if not folder.finished:
        raise ConfigError(f"{folder.path}: not a finished run; collect only what has ended")
    top = folder.read()
    conditions = {None: folder}
    if isinstance(top, ConditionsSummary):
        conditions = {name: folder.condition(name) for name in top.conditions}
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "config.yaml").is_file():
        shutil.copyfile(folder.config, out / "config.yaml")
    for name, condition in conditions.items():
        target = out / name if name else out
        target.mkdir(exist_ok=True)
        for seed, run in _seed_runs(condition).items():
            path = target / f"seed-{seed}.json"
            if path.exists():
                raise ConfigError(f"{path}: seed {seed} is already collected; remove it to replace it")
            write_text(path, json.dumps(to_dict(run), separators=(",", ":")) + "\n")  # compact: kept in git
    return out


def _read_seeds(folder: Path) -> dict[int, RunResults]:
    runs = {}
    for path in sorted(folder.glob("seed-*.json"), key=lambda p: int(p.stem.split("-")[1])):
        runs[int(path.stem.split("-")[1])] = from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))
    return runs


def load_experiment(folder: str | Path) -> Experiment:
    """An experiment folder's config and seeds, checked to be comparable."""
    folder = Path(folder)
    config = load_config(folder / "config.yaml")
    names = list(config.conditions())
    runs = {name: _read_seeds(folder / name if name else folder) for name in names}
    for name, seeds in runs.items():
        if not seeds:
            raise ConfigError(f"{folder / (name or '')}: no seed-<s>.json results")
    check_comparable(folder, [run for seeds in runs.values() for run in seeds.values()])
    return Experiment(folder.name, config, runs)


def check_comparable(where: Path, runs: list[RunResults]) -> None:
    """Refuse (one line naming what differs) to compare results produced by different code, libraries, threads,
    settings or models."""
    first = runs[0]
    for run in runs[1:]:
        for key in COMPARED:
            if first.provenance.get(key) != run.provenance.get(key):
                raise ConfigError(
                    f"{where}: seeds {first.seed} and {run.seed} were produced with different {key} "
                    f"({first.provenance.get(key)!r} vs {run.provenance.get(key)!r}); their numbers are not compared"
                )
