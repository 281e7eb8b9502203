"""`mhmoe analyze RUN_DIR`: every diagnostic on a finished run, into RUN_DIR/analysis and its report.

Probes, head ablation and gradient cosines read the frozen base model on a sample of training examples: the
representation a router sees. N_eff, route-wise forgetting and the forgetting attribution read each MoE
method's adapters after every task on the tasks' held-out test examples (analysis.forgetting_split):
N_eff and route-wise forgetting compare the adapters after the second-to-last and the last task on the
old-task tokens (every task before the last), routed by the first; the attribution A[j][i] compares the
adapters after tasks j-1 and j on task i. A run over several seeds is analysed seed by seed and its headline
figures reported with their 95% t intervals over seeds (analysis/across_seeds.py); a run over orders or modes is
analysed condition by condition, each condition's figures side by side (analysis/conditions.py). A method
trained without task boundaries has one adapter, after the whole stream: its per-task parts are skipped, with
the reason in analysis.json ('skipped') and the report.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mhmoe.adapters import KINDS
from mhmoe.analysis import across_conditions, across_seeds
from mhmoe.analysis.attribution import attribution
from mhmoe.analysis.causal import causal_attribution
from mhmoe.analysis.compositions import against_null, mean_comparison
from mhmoe.analysis.forgetting import route_forgetting
from mhmoe.analysis.gradients import composition_cosines, gradient_gram
from mhmoe.analysis.probes import head_importance, head_shares, split_examples, subspace_overlap, train_probe
from mhmoe.analysis.record import router_inputs, routes_and_losses, token_gradients
from mhmoe.analysis.summary import draw, report_section
from mhmoe.analysis.tokens import FEATURES, Batch, TokenTable, analysis_batches, analysis_examples, token_table
from mhmoe.cl.results import ConditionsSummary, SeedsSummary, to_dict
from mhmoe.cl.run_folder import RunFolder
from mhmoe.config import load_config
from mhmoe.data.stream import load_tasks
from mhmoe.data.trace import Task
from mhmoe.distributed import process_state
from mhmoe.errors import ConfigError
from mhmoe.files import write_json, write_text
from mhmoe.inject import find_targets, load_adapter
from mhmoe.models import load_model
from mhmoe.settings import AnalysisSettings, RunConfig


def routed(kind: str) -> bool:
    """Whether a saved adapter of this kind routes tokens (an unknown kind does not)."""
    return kind in KINDS and KINDS[kind].routed


def analysed_modules(model: nn.Module, suffix: str, max_layers: int) -> list[str]:
    """Up to `max_layers` modules named `suffix`, evenly spaced through the model."""
    names = list(find_targets(model, [suffix]))
    picks = np.unique(np.linspace(0, len(names) - 1, min(max_layers, len(names))).round().astype(int))
    return [names[i] for i in picks]


def layer_number(name: str) -> int:
    """The decoder-layer index inside a module name (its first integer component)."""
    return next((int(part) for part in name.split(".") if part.isdigit()), -1)


def _sample(count: int, keep: int, seed: int) -> np.ndarray:
    """A seeded boolean mask of `keep` tokens out of `count`."""
    mask = np.zeros(count, dtype=bool)
    mask[np.random.default_rng(seed).permutation(count)[:keep]] = True
    return mask


def probe_section(
    h: dict[str, np.ndarray], table: TokenTable, kept: np.ndarray, heads: int, s: AnalysisSettings, seed: int
) -> tuple[dict[str, dict[str, list]], list[list[list[float | None]]]]:
    """Per layer and feature: probe accuracy, chance, head shares; per layer the features' subspace overlap."""
    train, test = split_examples(table.example[kept], s.test_share, seed)
    result = {f: {"accuracy": [], "chance": [], "head_shares": []} for f in FEATURES}
    overlaps = []
    for name, inputs in h.items():
        if inputs.shape[1] % heads:
            raise ConfigError(f"analysis: field 'heads'={heads} does not divide the width {inputs.shape[1]} of {name}")
        weights = {}
        for feature in FEATURES:
            y = table.values[feature][kept]
            probe = train_probe(inputs[train], y[train], inputs[test], y[test])
            rows = result[feature]
            if probe is None:  # one value only (e.g. no labels in the data): nothing to decode
                rows["accuracy"].append(None), rows["chance"].append(None), rows["head_shares"].append(None)
                continue
            weights[feature] = probe.weights
            importance = head_importance(probe, inputs[train], inputs[test], y[test], heads)
            rows["accuracy"].append(probe.accuracy)
            rows["chance"].append(probe.chance)
            rows["head_shares"].append(head_shares(importance).tolist())
        overlaps.append(
            [
                [subspace_overlap(weights[a], weights[b]) if a in weights and b in weights else None for b in FEATURES]
                for a in FEATURES
            ]
        )
    return result, overlaps


def gradient_section(
    grads: dict[str, torch.Tensor], compositions: np.ndarray, examples: np.ndarray, seed: int
) -> dict[str, Any]:
    """Per layer: composition coherence (halves by example) and cross-composition cosines of exact g_t."""
    layers = {}
    for name, rows in grads.items():
        found = composition_cosines(gradient_gram(rows).numpy(), compositions, examples, seed=seed)
        layers[name] = {"coherence": found.coherence.tolist(), "cross": found.cross.tolist()}
    return layers


def n_eff_section(chosen: np.ndarray, compositions: np.ndarray, s: AnalysisSettings, seed: int) -> dict[str, Any]:
    """One layer's N_eff, path-wise and per head, each in both forms against the permutation null."""
    path = against_null(chosen, compositions, draws=s.null_draws, seed=seed)
    heads = [against_null(chosen[:, h], compositions, draws=s.null_draws, seed=seed) for h in range(chosen.shape[1])]
    return {"path": path.summary(), "per_head": mean_comparison(heads).summary()}


def measured_tokens(table: TokenTable, s: AnalysisSettings) -> np.ndarray:
    """Which tokens' losses measure forgetting: the answer tokens' (the loss matrix's), or with
    analysis.forgetting_tokens 'all' every token's."""
    return table.answer if s.forgetting_tokens == "answer" else np.ones(len(table), dtype=bool)


def route_section(
    routes: dict[str, np.ndarray],
    loss_before: np.ndarray,
    loss_after: np.ndarray,
    table: TokenTable,
    compositions: np.ndarray,
    s: AnalysisSettings,
    seed: int,
) -> dict[str, Any]:
    """N_eff per layer of one MoE method on the old-task tokens, and route-wise forgetting on those of them
    whose losses measure forgetting (`measured_tokens`: the answer tokens by default, as the loss matrix).

    routes: each module's (T, H, k) choices under the adapter before the last task; losses before and after
    it; `compositions` holds every token's composition id (table.compositions(), computed once).
    """
    old = table.values["task"] < len(table.names["task"]) - 1
    lost = old & measured_tokens(table, s)  # the tokens whose loss change is the forgetting measured
    layers, keys, count = [], [], int(lost.sum())
    for index, name in enumerate(routes):
        chosen = np.sort(routes[name], axis=-1)  # top-k as a set per head
        layers.append(n_eff_section(chosen[old], compositions[old], s, seed))
        keys.append(np.concatenate([np.full((count, 1), index), chosen[lost].reshape(count, -1)], axis=1))
    copies = len(routes)  # routes are pooled across modules, so each token appears once per module
    forgetting = route_forgetting(
        np.concatenate(keys),
        np.tile(compositions[lost], copies),
        np.tile(loss_before[lost], copies),
        np.tile(loss_after[lost], copies),
        np.tile(table.example[lost], copies),
        bins=s.bins,
        min_tokens=s.min_route_tokens,
        draws=s.bootstrap,
        seed=seed,
    )
    c = forgetting.correlation
    return {
        "old_tokens": int(old.sum()),
        "forgetting_tokens": f"{s.forgetting_tokens}: {count} of the old tasks' tokens",
        "old_examples": len(np.unique(table.example[old])),
        "heads": int(next(iter(routes.values())).shape[1]),
        "n_eff": layers,
        "old_loss_before": float(loss_before[lost].mean()),
        "old_loss_after": float(loss_after[lost].mean()),
        "bin_n_eff": forgetting.bin_n_eff.tolist(),
        "bin_mean": forgetting.bin_mean.tolist(),
        "bin_se": forgetting.bin_se.tolist(),
        "bin_routes": forgetting.bin_routes.tolist(),
        "correlation": None
        if c is None
        else {"rho": c.rho, "low": c.low, "high": c.high, "routes": c.routes, "draws": c.draws},
    }


def adapter_folders(run_dir: Path, results: dict) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Each MoE method's adapter folders, one after every task (adapters/<method>/<k>-<task>/), and for each MoE
    method without them why its per-task parts (summary.PER_TASK_PARTS) are skipped."""
    tasks = results["tasks"]
    found, skipped = {}, {}
    for method, result in results["methods"].items():
        if not routed(result["adapter"]["kind"]):
            continue
        if not result.get("boundaries", True):
            skipped[method] = (
                "trained without task boundaries, it has one adapter, saved after the whole stream "
                f"(adapters/{method}/stream), and these parts compare its adapters after consecutive tasks"
            )
        elif len(tasks) < 2:
            skipped[method] = "the stream has one task, while these parts compare the adapters after two tasks"
        else:
            found[method] = [run_dir / "adapters" / method / f"{k + 1}-{task}" for k, task in enumerate(tasks)]
    for folders in found.values():
        for folder in folders:
            if not (folder / "adapter_model.safetensors").is_file():
                raise ConfigError(f"{folder}: adapter not found; was the run interrupted?")
    return found, skipped


def method_section(
    model: nn.Module,
    folders: list[Path],
    batches: list[Batch],
    table: TokenTable,
    modules: list[str],
    s: AnalysisSettings,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    """One MoE method: per-token losses under the adapter after every task, routes under all but the last;
    N_eff and route-wise forgetting (last two adapters) and the attribution (every pair of tasks)."""
    routes, losses = [], []
    for k, folder in enumerate(folders):
        adapted = load_adapter(copy.deepcopy(model), folder)
        found, loss = routes_and_losses(adapted, batches, modules if k < len(folders) - 1 else [], progress)
        routes.append(found), losses.append(loss)
        del adapted
    compositions = table.compositions()
    section = route_section(routes[-2], losses[-2], losses[-1], table, compositions, s, seed)
    names = [f"layer {layer_number(m)}" for m in modules]
    section["attribution"] = attribution(losses, routes[:-1], table.values["task"], names, measured_tokens(table, s))
    picks = np.unique(np.linspace(0, len(modules) - 1, min(s.causal_modules, len(modules))).round().astype(int))
    chosen = [modules[i] for i in picks] if s.causal_modules else []
    section["causal_attribution"] = causal_attribution(model, folders, batches, chosen) if chosen else {}
    return {"before": folders[-2].name, "after": folders[-1].name, **section}


def analyze(run_dir: str | Path, overrides: list[str] | None = None, *, progress: bool = True) -> Path:
    """Run every diagnostic on a finished run; returns RUN_DIR/analysis (analysis.json and the pictures).

    A run over several seeds is analysed seed by seed, then summarised; a run over orders or modes condition by
    condition, each as a run of its own.
    Under `torchrun` / `accelerate launch` every model pass is split over the processes and gathered.
    """
    process_state()
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    if not folder.results.is_file():
        raise ConfigError(f"{folder.results}: not found; analyze needs a finished run folder")
    if not folder.finished:
        raise ConfigError(f"{folder.path}: the run has not finished (see mhmoe run --resume); analyze needs its end")
    typed = folder.read()
    results = to_dict(typed)
    if isinstance(typed, ConditionsSummary):
        return analyze_conditions(run_dir, results, overrides, progress=progress)
    if isinstance(typed, SeedsSummary):
        return analyze_seeds(run_dir, results, overrides, progress=progress)
    config: RunConfig = load_config(run_dir / "config.yaml", overrides or [])
    methods, skipped = adapter_folders(run_dir, results)
    analysis = analyze_folder(config, results, methods, skipped, progress)
    out = run_dir / "analysis"
    if process_state().is_main_process:  # every process holds the same results; one writes them
        out.mkdir(exist_ok=True)
        write_json(out / "analysis.json", analysis)
        pictures = draw(analysis, out)
        append_report(run_dir / "report.md", report_section(analysis, pictures, out.relative_to(run_dir)))
    process_state().wait_for_everyone()
    return out


def analyze_seeds(run_dir: Path, results: dict, overrides: list[str] | None, *, progress: bool) -> Path:
    """Analyse every seed folder (seed-<s>/) of a multi-seed run, then write RUN_DIR/analysis/analysis.json and
    the top report's analysis section with each headline figure's interval over seeds."""
    seeds = [int(seed) for seed in results["seeds"]]
    per_seed, skipped, dropped = {}, {}, {}
    for seed in seeds:
        folder = analyze(run_dir / f"seed-{seed}", overrides, progress=progress)
        analysis = json.loads((folder / "analysis.json").read_text(encoding="utf-8"))
        seed_dropped: dict[str, str] = {}
        per_seed[seed] = across_seeds.headline(analysis, seed_dropped)
        for name, note in seed_dropped.items():
            dropped.setdefault(name, []).append(f"seed {seed}: {note}")
        skipped.update(analysis["skipped"])  # the same methods in every seed: the run's config decides
    figures = across_seeds.summarise(per_seed)
    for name, note in across_seeds.missing(per_seed).items():
        dropped.setdefault(name, []).append(note)
    out = run_dir / "analysis"
    if process_state().is_main_process:
        out.mkdir(exist_ok=True)
        found = {"seeds": seeds, "figures": figures, "skipped": skipped, "per_seed": per_seed, "dropped": dropped}
        write_json(out / "analysis.json", found)
        append_report(run_dir / "report.md", across_seeds.report_section(seeds, figures, skipped, dropped))
    process_state().wait_for_everyone()
    return out


def analyze_conditions(run_dir: Path, results: dict, overrides: list[str] | None, *, progress: bool) -> Path:
    """Analyse every condition folder (<order>/ or <mode>/) of a repeated run, each as a run of its own, then
    write RUN_DIR/analysis/analysis.json and the top report's analysis section with each condition's headline
    figures side by side. Conditions are fixed, not samples: nothing is pooled across them."""
    conditions = {}
    for name in results["conditions"]:
        folder = analyze(run_dir / name, overrides, progress=progress)
        conditions[name] = across_conditions.entry(json.loads((folder / "analysis.json").read_text(encoding="utf-8")))
    out = run_dir / "analysis"
    if process_state().is_main_process:
        out.mkdir(exist_ok=True)
        write_json(out / "analysis.json", {"kind": results["kind"], "conditions": conditions})
        append_report(run_dir / "report.md", across_conditions.report_section(results["kind"], conditions))
    process_state().wait_for_everyone()
    return out


def _tables(
    tokenizer: Any, tasks: list[Task], split: str, s: AnalysisSettings, config: RunConfig
) -> tuple[list[Batch], TokenTable]:
    examples = analysis_examples(tasks, s.examples_per_task, config.seed, split)
    batches = analysis_batches(tokenizer, examples, s.batch_size, config.train.max_length)
    table = token_table(
        batches,
        examples,
        [t.name for t in tasks],
        frequency_buckets=s.frequency_buckets,
        position_buckets=s.position_buckets,
        scorers=[t.scorer for t in tasks],
    )
    return batches, table


def analyze_folder(
    config: RunConfig, results: dict, methods: dict[str, list[Path]], skipped: dict[str, str], progress: bool
) -> dict:
    """The analysis of one run folder as a JSON-ready dict (see `analyze`); `skipped` gives, per MoE method
    without per-task adapters, why its routes are not analysed."""
    s: AnalysisSettings = config.analysis
    tasks = load_tasks(config.data, config.seed)
    model, tokenizer = load_model(config.model.name, config.model.torch_dtype)
    model.requires_grad_(False)
    batches, table = _tables(tokenizer, tasks, "train", s, config)
    modules = analysed_modules(model, s.module, s.max_layers)
    mhmoe_heads = [r["adapter"]["heads"] for r in results["methods"].values() if r["adapter"]["kind"] == "mhmoe"]
    heads = mhmoe_heads[0] if mhmoe_heads else s.heads

    probe_kept = _sample(len(table), s.probe_tokens, config.seed)
    h = router_inputs(model, batches, modules, probe_kept, progress)
    probes, overlaps = probe_section(h, table, probe_kept, heads, s, config.seed)
    del h
    grad_kept = _sample(len(table), s.gradient_tokens, config.seed + 1)
    grads = token_gradients(
        model, batches, modules, grad_kept, sketch=s.gradient_sketch, seed=config.seed, progress=progress
    )
    compositions = table.compositions()
    cosines = gradient_section(grads, compositions[grad_kept], table.example[grad_kept], config.seed)
    del grads
    routes = {}
    if methods:
        old_batches, old_table = _tables(tokenizer, tasks, s.forgetting_split, s, config)
        routes = {
            method: method_section(model, folders, old_batches, old_table, modules, s, config.seed, progress)
            for method, folders in methods.items()
        }
    return {
        "seed": config.seed,
        "tokens": len(table),
        "examples": len(np.unique(table.example)),
        "features": {f: table.names[f] for f in FEATURES},
        "compositions": int(compositions.max() + 1),
        "tasks": [t.name for t in tasks],
        "modules": modules,
        "layers": [layer_number(m) for m in modules],
        "heads": heads,
        "probes": probes,
        "overlap": overlaps,
        "gradient_cosines": cosines,
        "gradient_tokens": int(grad_kept.sum()),
        "routes": routes,
        "skipped": skipped,
        "settings": vars(s),
    }


def append_report(report: Path, section: str) -> None:
    """Replace the report's analysis section (everything from its heading) with `section`."""
    text = report.read_text(encoding="utf-8") if report.is_file() else ""
    head = text.split("\n## Analysis\n")[0].rstrip("\n")
    write_text(report, f"{head}\n\n{section}" if head else section)
