"""`mhmoe analyze RUN_DIR`: every diagnostic on a finished run, into RUN_DIR/analysis and its report.

Probes, head ablation and gradient cosines read the frozen base model: the representation a router sees.
N_eff and route-wise forgetting read each MoE method's adapters after the second-to-last and the last task:
the old-task tokens (every task before the last) are routed by the first, and their losses compared.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mhmoe.analysis.compositions import effective_compositions, per_head_compositions
from mhmoe.analysis.forgetting import route_forgetting
from mhmoe.analysis.gradients import composition_cosines, token_gradient_gram
from mhmoe.analysis.probes import head_importance, head_shares, split_tokens, subspace_overlap, train_probe
from mhmoe.analysis.record import output_gradients, router_inputs, routes_and_losses
from mhmoe.analysis.summary import draw, report_section
from mhmoe.analysis.tokens import (
    FEATURES,
    Batch,
    TokenTable,
    analysis_batches,
    analysis_examples,
    batch_spans,
    token_table,
)
from mhmoe.config import AnalysisSettings, RunConfig, load_config
from mhmoe.data.stream import load_tasks
from mhmoe.distributed import process_state
from mhmoe.errors import ConfigError
from mhmoe.files import write_json, write_text
from mhmoe.inject import find_targets, load_adapter
from mhmoe.models import load_model

MOE_KINDS = ("loramoe", "mhmoe")


def analysed_modules(model: nn.Module, suffix: str, max_layers: int) -> list[str]:
    """Up to `max_layers` modules named `suffix`, evenly spaced through the model."""
    names = list(find_targets(model, [suffix]))
    picks = np.unique(np.linspace(0, len(names) - 1, min(max_layers, len(names))).round().astype(int))
    return [names[i] for i in picks]


def layer_number(name: str) -> int:
    """The decoder-layer index inside a module name (its first integer component)."""
    return next((int(part) for part in name.split(".") if part.isdigit()), -1)


def _sample(count: int, keep: int, seed: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """A seeded boolean mask of `keep` tokens out of `count` (only among `allowed` ones, if given)."""
    candidates = np.arange(count) if allowed is None else np.flatnonzero(allowed)
    mask = np.zeros(count, dtype=bool)
    mask[np.random.default_rng(seed).permutation(candidates)[:keep]] = True
    return mask


def _few_batches(batches: list[Batch], tokens: int, seed: int) -> np.ndarray:
    """Tokens of a seeded set of batches holding about 4x `tokens`: the gradient pass (a backward per batch)
    then visits only those batches, however long the corpus."""
    starts, counts = batch_spans(batches)
    allowed = np.zeros(int(counts.sum()), dtype=bool)
    held = 0
    for b in np.random.default_rng(seed).permutation(len(batches)):
        if held >= 4 * tokens:
            break
        allowed[starts[b] : starts[b] + counts[b]] = True
        held += counts[b]
    return allowed


def probe_section(
    h: dict[str, np.ndarray], table: TokenTable, kept: np.ndarray, heads: int, s: AnalysisSettings, seed: int
) -> tuple[dict[str, dict[str, list]], list[list[list[float | None]]]]:
    """Per layer and feature: probe accuracy, chance, head shares; per layer the features' subspace overlap."""
    train, test = split_tokens(int(kept.sum()), s.test_share, seed)
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
    grads: dict[str, tuple[torch.Tensor, torch.Tensor]], compositions: np.ndarray, seed: int
) -> dict[str, Any]:
    """Per layer: composition coherence and cross-composition cosines of per-token weight gradients."""
    layers = {}
    for name, (inputs, deltas) in grads.items():
        found = composition_cosines(token_gradient_gram(deltas, inputs).numpy(), compositions, seed=seed)
        layers[name] = {"coherence": found.coherence.tolist(), "cross": found.cross.tolist()}
    return layers


def route_section(
    model: nn.Module,
    batches: list[Batch],
    table: TokenTable,
    compositions: np.ndarray,
    modules: list[str],
    before: Path,
    after: Path,
    s: AnalysisSettings,
    progress: bool,
) -> dict[str, Any]:
    """N_eff per layer (path-wise and per head) and route-wise forgetting of one MoE method.

    `compositions` holds every analysed token's composition id (table.compositions(), computed once).
    """
    before_model = load_adapter(copy.deepcopy(model), before)
    routes, loss_before = routes_and_losses(before_model, batches, modules, progress)
    del before_model
    after_model = load_adapter(copy.deepcopy(model), after)
    _, loss_after = routes_and_losses(after_model, batches, [], progress)
    del after_model
    last = len(table.names["task"]) - 1
    old = table.values["task"] < last
    compositions = compositions[old]
    path, per_head, keys = [], [], []
    for index, name in enumerate(modules):
        chosen = np.sort(routes[name][old], axis=-1)  # top-k as a set per head
        path.append(effective_compositions(chosen, compositions).mean)
        per_head.append(float(np.mean([h.mean for h in per_head_compositions(chosen, compositions)])))
        keys.append(np.concatenate([np.full((len(chosen), 1), index), chosen.reshape(len(chosen), -1)], axis=1))
    forgetting = route_forgetting(
        np.concatenate(keys),
        np.tile(compositions, len(modules)),
        np.tile(loss_before[old], len(modules)),
        np.tile(loss_after[old], len(modules)),
        bins=s.bins,
        min_tokens=s.min_route_tokens,
    )
    c = forgetting.correlation
    return {
        "before": before.name,
        "after": after.name,
        "old_tokens": int(old.sum()),
        "heads": int(routes[modules[0]].shape[1]),
        "path": path,
        "per_head": per_head,
        "old_loss_before": float(loss_before[old].mean()),
        "old_loss_after": float(loss_after[old].mean()),
        "bin_n_eff": forgetting.bin_n_eff.tolist(),
        "bin_mean": forgetting.bin_mean.tolist(),
        "bin_se": forgetting.bin_se.tolist(),
        "correlation": None if c is None else {"rho": c.rho, "low": c.low, "high": c.high, "routes": c.routes},
    }


def _moe_methods(run_dir: Path, results: dict) -> dict[str, tuple[Path, Path]]:
    """Each MoE method's adapter folders after the second-to-last and the last task."""
    tasks = results["tasks"]
    if len(tasks) < 2:
        return {}
    found = {}
    for method, result in results["methods"].items():
        if result["adapter"]["kind"] in MOE_KINDS:
            folder = run_dir / "adapters" / method
            found[method] = (folder / f"{len(tasks) - 1}-{tasks[-2]}", folder / f"{len(tasks)}-{tasks[-1]}")
    return found


def analyze(run_dir: str | Path, overrides: list[str] | None = None, *, progress: bool = True) -> Path:
    """Run every diagnostic on a finished run; returns RUN_DIR/analysis (analysis.json and the pictures).

    Under `torchrun` / `accelerate launch` every model pass is split over the processes and gathered.
    """
    process_state()
    run_dir = Path(run_dir)
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise ConfigError(f"{results_path}: not found; analyze needs a finished run folder")
    config: RunConfig = load_config(run_dir / "config.yaml", overrides or [])
    results = json.loads(results_path.read_text(encoding="utf-8"))
    if "per_seed" in results:
        first = run_dir / f"seed-{results['seeds'][0]}"
        raise ConfigError(f"{run_dir}: a run over several seeds; analyze one seed's folder, e.g. {first}")
    methods = _moe_methods(run_dir, results)
    for before, after in methods.values():
        for folder in (before, after):
            if not (folder / "adapter_model.safetensors").is_file():
                raise ConfigError(f"{folder}: adapter not found; was the run interrupted?")
    s: AnalysisSettings = config.analysis
    tasks = load_tasks(config.data, config.seed)
    model, tokenizer = load_model(config.model.name, config.model.torch_dtype)
    model.requires_grad_(False)
    examples = analysis_examples(tasks, s.examples_per_task, config.seed)
    batches = analysis_batches(tokenizer, examples, s.batch_size, config.train.max_length)
    table = token_table(
        batches,
        examples,
        [t.name for t in tasks],
        frequency_buckets=s.frequency_buckets,
        position_buckets=s.position_buckets,
    )
    modules = analysed_modules(model, s.module, s.max_layers)
    mhmoe_heads = [r["adapter"]["heads"] for r in results["methods"].values() if r["adapter"]["kind"] == "mhmoe"]
    heads = mhmoe_heads[0] if mhmoe_heads else s.heads

    probe_kept = _sample(len(table), s.probe_tokens, config.seed)
    h = router_inputs(model, batches, modules, probe_kept, progress)
    probes, overlaps = probe_section(h, table, probe_kept, heads, s, config.seed)
    del h
    grad_kept = _sample(
        len(table), s.gradient_tokens, config.seed + 1, _few_batches(batches, s.gradient_tokens, config.seed + 1)
    )
    grads = output_gradients(model, batches, modules, grad_kept, progress)
    compositions = table.compositions()
    cosines = gradient_section(grads, compositions[grad_kept], config.seed)
    del grads
    routes = {
        method: route_section(model, batches, table, compositions, modules, before, after, s, progress)
        for method, (before, after) in methods.items()
    }
    analysis = {
        "tokens": len(table),
        "features": {f: table.names[f] for f in FEATURES},
        "compositions": int(compositions.max() + 1),
        "modules": modules,
        "layers": [layer_number(m) for m in modules],
        "heads": heads,
        "probes": probes,
        "overlap": overlaps,
        "gradient_cosines": cosines,
        "routes": routes,
        "settings": vars(s),
    }
    out = run_dir / "analysis"
    if process_state().is_main_process:  # every process holds the same results; one writes them
        out.mkdir(exist_ok=True)
        write_json(out / "analysis.json", analysis)
        pictures = draw(analysis, out)
        _append_report(run_dir / "report.md", report_section(analysis, pictures, out.relative_to(run_dir)))
    process_state().wait_for_everyone()
    return out


def _append_report(report: Path, section: str) -> None:
    """Replace the report's analysis section (everything from its heading) with `section`."""
    text = report.read_text(encoding="utf-8") if report.is_file() else ""
    head = text.split("\n## Analysis\n")[0].rstrip("\n")
    write_text(report, f"{head}\n\n{section}" if head else section)
