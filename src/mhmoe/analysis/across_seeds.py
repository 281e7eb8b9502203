"""The analysis of a run over several seeds: every seed's folder analysed on its own, then each headline
figure reported with its mean and 95% Student-t interval over seeds (the seed is the independent unit)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mhmoe.analysis.summary import skipped_lines
from mhmoe.analysis.tokens import FEATURES
from mhmoe.metrics.uncertainty import t_interval


def _mean(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(kept)) if kept else math.nan


def _pair_excess(route: dict[str, Any], kind: str) -> float:
    return _mean([layer[kind]["pair"]["excess"] for layer in route["n_eff"]])


def headline(analysis: dict[str, Any]) -> dict[str, float]:
    """One seed's headline figures by name (layers averaged); figures that are undefined are left out."""
    figures = {}
    for feature in FEATURES:
        rows = analysis["probes"][feature]
        figures[f"probe accuracy - chance, {feature}"] = _mean(rows["accuracy"]) - _mean(rows["chance"])
    cos = analysis["gradient_cosines"].values()
    figures["gradient coherence (halves by example)"] = _mean([np.mean(v["coherence"]) for v in cos if v["coherence"]])
    figures["gradient cosine across compositions"] = _mean([np.mean(v["cross"]) for v in cos if v["cross"]])
    for method, r in analysis["routes"].items():
        figures[f"{method}: pair N_eff excess over the null, path-wise"] = _pair_excess(r, "path")
        figures[f"{method}: pair N_eff excess over the null, per head"] = _pair_excess(r, "per_head")
        figures[f"{method}: plug-in N_eff (eq. 9), path-wise"] = _mean(
            [layer["path"]["plug_in"]["observed"] for layer in r["n_eff"]]
        )
        figures[f"{method}: Spearman rho, N_eff vs forgetting"] = (r["correlation"] or {}).get("rho", math.nan)
        figures[f"{method}: old-task loss change over the last task"] = r["old_loss_after"] - r["old_loss_before"]
        figures[f"{method}: mean A[j][i] over task pairs"] = _mean([v for row in r["attribution"]["A"] for v in row])
    if {"loramoe", "mhmoe"} <= set(analysis["routes"]):
        name = "pair N_eff excess over the null, path-wise"
        figures[f"mhmoe - loramoe: {name}"] = figures[f"mhmoe: {name}"] - figures[f"loramoe: {name}"]
    return {k: v for k, v in figures.items() if math.isfinite(v)}


def summarise(per_seed: dict[int, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Per figure present in every seed: mean, 95% t interval over seeds and the per-seed values."""
    names = [n for n in next(iter(per_seed.values())) if all(n in f for f in per_seed.values())]
    out = {}
    for name in names:
        values = [f[name] for f in per_seed.values()]
        out[name] = {**t_interval(values).to_dict(), "values": values}
    return out


def _verdict(figures: dict[str, dict[str, Any]]) -> list[str]:
    key = "mhmoe - loramoe: pair N_eff excess over the null, path-wise"
    if key not in figures or figures[key]["low"] is None:
        return []
    f = figures[key]
    if f["high"] < 0:
        answer = "yes: MH-MoE's routes hold fewer compositions, beyond chance, than LoRAMoE's"
    elif f["low"] > 0:
        answer = "no, the opposite: LoRAMoE's routes hold fewer compositions beyond chance"
    else:
        answer = "not shown (the interval over seeds includes 0)"
    return [
        f"- **Across seeds, is MH-MoE's N_eff excess lower than LoRAMoE's?** {answer}: difference {f['mean']:+.2f} "
        f"[{f['low']:+.2f}, {f['high']:+.2f}] over {f['n']} seeds.",
    ]


def report_section(seeds: list[int], figures: dict[str, dict[str, Any]], skipped: dict[str, str]) -> str:
    """The top report's '## Analysis' section: each figure's mean and interval over seeds, and the parts skipped."""
    lines = [
        "## Analysis",
        "",
        f"Each seed's folder is analysed on its own ({', '.join(f'[seed {s}](seed-{s}/report.md)' for s in seeds)}); "
        "each figure below is the mean over seeds with its 95% t interval.",
        "",
        *_verdict(figures),
        *skipped_lines(skipped),
        "",
        "| figure | mean | 95% interval | per seed |",
        "|---|---|---|---|",
    ]
    for name, f in figures.items():
        interval = "-" if f["low"] is None else f"[{f['low']:.3f}, {f['high']:.3f}]"
        lines.append(f"| {name} | {f['mean']:.3f} | {interval} | {', '.join(f'{v:.3f}' for v in f['values'])} |")
    return "\n".join(lines) + "\n"
