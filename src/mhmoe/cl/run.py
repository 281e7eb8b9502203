"""A continual-learning run: every entry (method or variant) trains on the same stream, and after each task
every task of the stream is scored, filling R[i][j]. The untrained model's scores form the base row.

`run` resolves the plan (`mhmoe.cl.plan`: settings, data, folders, all checked before the model loads or a
folder is written), then executes its cells: each seed's run trains the entries one after another through
the one training driver (`mhmoe.cl.driver`), and the cells above summarise over seeds and conditions.
Resuming is executing the same plan over the existing folder: finished cells are read back, the interrupted
one continues from its newest checkpoint, and the rest start.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn

from mhmoe.accounting import matched_size
from mhmoe.cl.anytime_record import anytime_metrics
from mhmoe.cl.checkpoint import Checkpoint, Position, clear_checkpoints, latest_folder
from mhmoe.cl.claims_report import claims_section
from mhmoe.cl.conditions import summarise_conditions, write_conditions_report
from mhmoe.cl.driver import RunContext, fresh_adapter, train_entry  # noqa: F401 (fresh_adapter: public)
from mhmoe.cl.entries import Entry, adapter_config, resolve_entries
from mhmoe.cl.evaluate import majority_answer_score
from mhmoe.cl.over_seeds import summarise_seeds, write_seeds_report
from mhmoe.cl.plan import (
    ConditionsCell,
    RunPlan,
    SeedCell,
    SeedsCell,
    cell_finished,
    checkpoint_owner,
    next_seeds,
    provenance,
    resolve,
    start,
)
from mhmoe.cl.report import write_report
from mhmoe.cl.results import ConditionsSummary, RunResults, SeedsSummary, from_dict, to_dict
from mhmoe.cl.router_facts import ROUTERS_FIXED_NOTE
from mhmoe.cl.run_folder import MetricsLog, flat_settings
from mhmoe.cl.train import TrainingError
from mhmoe.data.collate import check_answers_fit
from mhmoe.distributed import cpu_only, process_state
from mhmoe.errors import CheckpointError
from mhmoe.inject import check_attachable
from mhmoe.metrics import bwt, final_old_loss, forgetting_curves, fwt, loss_bwt, op
from mhmoe.models import load_model
from mhmoe.settings import RunConfig


def matched_entries(config: RunConfig, model: nn.Module, stream_length: int) -> dict[str, Entry]:
    """Each entry (method or variant) by name, its adapter's size (rank, or prefix length) matched to
    `config.match_activated`'s.

    An entry is matched by its own budget (activated or total parameters, or not at all); one already equal to
    the reference is left as it is. An adapter with one part per task (O-LoRA's LoRAs, the prefix kinds'
    prefixes) gets one per task of the stream; O-LoRA is matched with all of them in the forward pass, as
    after the last task, a prefix method with one task's prefixes, which is all a token sees.
    """
    reference = adapter_config(config, config.match_activated) if config.match_activated else None
    entries = {}
    for entry in resolve_entries(config):
        adapter = entry.adapter.for_stream(stream_length)
        check_attachable(model, adapter)
        if reference is not None and entry.match != "none" and adapter != reference:
            adapter = adapter.resized(matched_size(model, adapter, reference, entry.match))
        entries[entry.name] = dataclasses.replace(entry, adapter=adapter)
    return entries


@dataclass
class Shared:
    """What every seed of a run reuses: the frozen base model, its tokenizer and each entry, matched."""

    base_model: nn.Module
    tokenizer: Any
    entries: dict[str, Entry]
    provenance: dict[str, Any]
    """What every result of the run records of the code, libraries and threads that produced it."""


def run(
    config: RunConfig | None = None,
    *,
    preset: str | None = None,
    resume: str | Path | None = None,
    add_seeds: list[int] | None = None,
) -> Path:
    """Run every entry of `config` on its stream, once per seed (and per order or mode), or continue the
    interrupted run `resume`; returns the run folder.

    One seed writes its run folder directly; several seeds write one complete single-seed run folder per seed
    (`seed-<s>/`) and, at the top, results.json and report.md with the intervals over seeds. With `orders` or
    `modes`, each order or mode is such a run in its own folder, and the top compares the entries across them.
    A resumed run ends with the same results as an uninterrupted one: it restarts from the newest checkpoint
    with the same data order, state and RNG; `add_seeds` extends a finished or interrupted multi-seed run with
    more seeds of the same settings, recorded in its folder.
    """
    plan = resolve(config, preset=preset, resume=resume, add_seeds=add_seeds)
    shared = load_shared(plan)
    if resume is None:
        start(plan)
    folder = plan.root.folder.path
    results = execute(plan.root, shared)
    while (plan := next_seeds(plan, results)) is not None:  # until_resolved: another group of seeds
        results = execute(plan.root, shared)
    return folder


def load_shared(plan: RunPlan) -> Shared:
    """The base model (frozen) and tokenizer, and every entry matched on it."""
    config = plan.config
    if config.threads:
        torch.set_num_threads(config.threads)  # before anything computes: the count is part of the result
    base_model, tokenizer = load_model(config.model.name, config.model.torch_dtype)
    base_model.requires_grad_(False)
    for cell in seed_cells(plan.root):
        check_answers_fit(tokenizer, cell.tasks, config.train.max_length)
    length = len(_first_seed(plan.root).tasks)
    shared = Shared(base_model, tokenizer, matched_entries(config, base_model, length), provenance(plan.fingerprint))
    fixed = [name for name, entry in shared.entries.items() if entry.adapter.routers_fixed]
    notes = config.data.ignored() + ([f"{', '.join(fixed)}: {ROUTERS_FIXED_NOTE}"] if fixed else [])
    for note in notes if process_state().is_main_process else []:
        print(f"mhmoe: note: {note}", file=sys.stderr)
    return shared


def _first_seed(cell) -> SeedCell:
    return next(seed_cells(cell))


def seed_cells(cell) -> Iterator[SeedCell]:
    """Every seed's cell under `cell`, in the order they run."""
    if isinstance(cell, SeedCell):
        yield cell
        return
    for child in cell.seeds if isinstance(cell, SeedsCell) else cell.conditions.values():
        yield from seed_cells(child)


def execute(cell, shared: Shared) -> Any:
    """Run one cell of the plan (and the cells under it); returns its results."""
    if isinstance(cell, SeedCell):
        return run_seed_cell(cell, shared)
    if isinstance(cell, SeedsCell):
        return run_seeds_cell(cell, shared)
    return run_conditions_cell(cell, shared)


def run_seed_cell(cell: SeedCell, shared: Shared) -> RunResults:
    """A single-seed run in its folder: finished, its results; checkpointed, resumed; else started afresh."""
    folder = cell.folder
    if folder.finished:
        return folder.read()
    checkpoint = folder.checkpoint(checkpoint_owner(cell.config))
    if checkpoint is None and folder.plan.is_file():  # the top folder: its config and fingerprint stay
        folder.clear(keep=(folder.config, folder.plan))
    elif checkpoint is None:  # never started, or stopped before its first checkpoint
        folder.begin(cell.config, replace=True)
    return run_seed(cell, shared, checkpoint)


def run_seeds_cell(cell: SeedsCell, shared: Shared) -> SeedsSummary:
    """Every seed in seed-<s>/, then the top results.json and report.md over seeds."""
    if cell_finished(cell):
        return cell.folder.read()
    if not cell.folder.config.is_file():
        cell.folder.begin(cell.config)
    per_seed = {seed_cell.config.seed: to_dict(run_seed_cell(seed_cell, shared)) for seed_cell in cell.seeds}
    summary = SeedsSummary(**summarise_seeds(per_seed, cell.config.reference_method()))
    if process_state().is_main_process:
        cell.folder.write(summary)
        claims = claims_section(cell.config.declared_claims(), summary.per_seed, cell.config.looks())
        write_seeds_report(cell.folder.path, to_dict(summary), claims)
    return summary


def run_conditions_cell(cell: ConditionsCell, shared: Shared) -> ConditionsSummary:
    """Every order or mode in its own folder, then the top comparison across them."""
    per_condition = {}
    for name, child in cell.conditions.items():
        result = execute(child, shared)
        if isinstance(result, RunResults):  # one seed: summarised as a one-seed run
            result = SeedsSummary(**summarise_seeds({result.seed: to_dict(result)}, child.config.reference_method()))
        per_condition[name] = to_dict(result)
    summary = ConditionsSummary(**summarise_conditions(per_condition, cell.config.reference_method(), cell.kind))
    if process_state().is_main_process:
        cell.folder.write(summary)
        write_conditions_report(cell.folder.path, to_dict(summary))
    return summary


def untrained_results(cell: SeedCell, shared: Shared, ctx_log, evaluate) -> RunResults:
    """The run's results before any training: the untrained row of R and L, and each task's majority score."""
    config, tasks = cell.config, cell.tasks
    base = evaluate(shared.base_model, "untrained evaluate")
    row = {"scores": base.scores, "errors": base.errors, "losses": base.losses}
    ctx_log({"event": "eval", "method": "untrained", **row})
    majority = [majority_answer_score(t, config.eval.split) for t in tasks]
    names = [t.name for t in tasks]
    results = RunResults(names, config.model.name, config.seed, base.scores, base.errors, base.losses, majority)
    results.provenance = shared.provenance
    return results


def run_seed(cell: SeedCell, shared: Shared, checkpoint: Checkpoint | None) -> RunResults:
    """Every entry on one seed's stream, in the cell's folder; returns that folder's results."""
    config, run_dir = cell.config, cell.folder.path
    started = time.perf_counter()
    accelerator = Accelerator(log_with=config.log_with or None, project_dir=run_dir, cpu=cpu_only())
    if config.log_with:
        accelerator.init_trackers("tracking", config=flat_settings(config.to_dict()))
    log = MetricsLog(cell.folder.metrics, accelerator, resume_at=checkpoint and checkpoint.metrics_bytes)
    shared.base_model.to(accelerator.device)
    ctx = RunContext(run_dir, config, cell.tasks, shared.tokenizer, accelerator, log, {}, checkpoint_owner(config))
    if checkpoint is None:
        results = untrained_results(cell, shared, log, ctx.evaluate)
        ctx.results = to_dict(results)
        ctx.checkpoint(Position(0, 0, 0))
    else:
        if checkpoint.position.method > len(shared.entries):
            raise CheckpointError(
                f"{latest_folder(run_dir)}/state.json: position method {checkpoint.position.method} is past this "
                f"run's {len(shared.entries)} entries"
            )
        results = from_dict(checkpoint.results, f"{latest_folder(run_dir)}/state.json")
        ctx.results = to_dict(results)
    for index, (name, entry) in enumerate(shared.entries.items()):
        if checkpoint is not None and index < checkpoint.position.method:
            continue
        here = None  # a checkpoint between entries holds no adapter: the entry starts afresh
        if checkpoint is not None and index == checkpoint.position.method and checkpoint.adapter is not None:
            here = checkpoint
        try:
            result = train_entry(index, entry, shared.base_model, ctx, here)
        except TrainingError as err:
            latest = latest_folder(run_dir)
            raise TrainingError(f"{err}; the last good checkpoint is kept ({latest}; see --resume)") from None
        results.methods[name] = summarise(result, results.base)
        results.seconds += time.perf_counter() - started
        started = time.perf_counter()
        ctx.results = to_dict(results)
        if accelerator.is_main_process:
            cell.folder.write(results)
        ctx.checkpoint(Position(index + 1, 0, 0))
    finish(cell, results, accelerator)
    return results


def finish(cell: SeedCell, results: RunResults, accelerator: Accelerator) -> None:
    """Write the report, mark the results complete and drop the checkpoints."""
    if accelerator.is_main_process:
        write_report(cell.folder.path, to_dict(results), cell.config.eval.scoring)
        results.complete = True
        cell.folder.write(results)
        clear_checkpoints(cell.folder.path)
    accelerator.end_training()


def summarise(result: dict[str, Any], base: list[float]) -> dict[str, Any]:
    """Add OP, BWT, FWT, loss-BWT and each task's loss forgetting curve (from R and L, with task boundaries)
    and the anytime metrics (from the anytime record, with stream.eval_every) to one entry's result."""
    summary = dict(result)
    if "R" in result:
        R, L = result["R"], result["L"]
        summary |= {
            "op": op(R),
            "bwt": bwt(R),
            "fwt": fwt(R, base),
            "loss_bwt": loss_bwt(L),
            "loss_curves": forgetting_curves(L),
        }
        if len(R) > 1:  # how well the earlier tasks were learned: what BWT and loss-BWT start from
            earlier = range(len(R) - 1)
            summary["learned"] = sum(R[i][i] for i in earlier) / len(earlier)
            summary["learned_loss"] = sum(L[i][i] for i in earlier) / len(earlier)
            summary["final_old_loss"] = final_old_loss(L)
    if "anytime" in result:
        summary |= anytime_metrics(result["anytime"])
    return summary
