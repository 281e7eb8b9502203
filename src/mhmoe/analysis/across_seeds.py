"""The analysis of a run over several seeds: every seed's folder analysed on its own, then each headline
figure reported with its mean and 95% Student-t interval over seeds (the seed is the independent unit).

Nothing is left out silently: a layer value that is undefined or not finite, a figure undefined in a seed, and
a figure missing from some seeds are each counted and named in the report's "Left out" lines."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mhmoe.analysis.summary import skipped_lines
from mhmoe.analysis.tokens import FEATURES
from mhmoe.metrics.uncertainty import t_interval


class _Means:
    """Means over layers that count what they leave out: `dropped` maps a figure to what was left out of it."""

    def __init__(self, dropped: dict[str, str] | None) -> None:
        self.dropped = dropped if dropped is not None else {}

    def __call__(self, name: str, values: list[float | None]) -> float:
        kept = [v for v in values if v is not None and math.isfinite(v)]
        if len(kept) < len(values):
            self.dropped[name] = f"{len(values) - len(kept)} of {len(values)} layer values undefined or not finite"
        return float(np.mean(kept)) if kept else math.nan


def headline(analysis: dict[str, Any], dropped: dict[str, str] | None = None) -> dict[str, float]:
    """One seed's headline figures by name (layers averaged). Figures that are undefined are left out; with
    `dropped`, each figure that lost layer values, or was left out, is named there with what was lost."""
    mean, figures = _Means(dropped), {}
    for feature in FEATURES:
        rows, name = analysis["probes"][feature], f"probe accuracy - chance, {feature}"
        figures[name] = mean(name, rows["accuracy"]) - mean(name, rows["chance"])
    cos = analysis["gradient_cosines"].values()
    name = "gradient coherence (halves by example)"
    figures[name] = mean(name, [np.mean(v["coherence"]) for v in cos if v["coherence"]])
    name = "gradient cosine across compositions"
    figures[name] = mean(name, [np.mean(v["cross"]) for v in cos if v["cross"]])
    for method, r in analysis["routes"].items():
        for kind, label in (("path", "path-wise"), ("per_head", "per head")):
            name = f"{method}: pair N_eff excess over the null, {label}"
            figures[name] = mean(name, [layer[kind]["pair"]["excess"] for layer in r["n_eff"]])
        name = f"{method}: plug-in N_eff (eq. 9), path-wise"
        figures[name] = mean(name, [layer["path"]["plug_in"]["observed"] for layer in r["n_eff"]])
        figures[f"{method}: Spearman rho, N_eff vs forgetting"] = (r["correlation"] or {}).get("rho", math.nan)
        figures[f"{method}: old-task loss change over the last task"] = r["old_loss_after"] - r["old_loss_before"]
        name = f"{method}: mean A[j][i] over task pairs"
        figures[name] = mean(name, [v for row in r["attribution"]["A"] for v in row])
    if {"loramoe", "mhmoe"} <= set(analysis["routes"]):
        name = "pair N_eff excess over the null, path-wise"
        figures[f"mhmoe - loramoe: {name}"] = figures[f"mhmoe: {name}"] - figures[f"loramoe: {name}"]
    for name, value in figures.items():
        if not math.isfinite(value):
            mean.dropped[name] = "; ".join(filter(None, [mean.dropped.get(name), "undefined, left out"]))
    return {k: v for k, v in figures.items() if math.isfinite(v)}


def missing(per_seed: dict[int, dict[str, float]]) -> dict[str, str]:
    """Each figure that some seeds lack (so `summarise` leaves it out), with those seeds."""
    names = dict.fromkeys(name for figures in per_seed.values() for name in figures)
    gaps = {name: [seed for seed, figures in per_seed.items() if name not in figures] for name in names}
    return {name: f"missing in seed(s) {', '.join(map(str, gap))}, left out" for name, gap in gaps.items() if gap}


def left_out_lines(dropped: dict[str, list[str]]) -> list[str]:
    """The report's lines naming every value left out of a figure."""
    if not dropped:
        return []
    return ["", "Left out:", *(f"- {name}: {'; '.join(notes)}." for name, notes in dropped.items())]


def summarise(per_seed: dict[int, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Per figure present in every seed: mean, 95% t interval over seeds and the per-seed values (`missing`
    names the others)."""
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


def report_section(seeds: list[int], figures: dict[str, dict[str, Any]], skipped: dict[str, str],
                   dropped: dict[str, list[str]] | None = None) -> str:  # fmt: skip
    """The top report's '## Analysis' section: each figure's mean and interval over seeds, the parts skipped, and
    what was left out of each figure."""
    lines = [
        "## Analysis",
        "",
        f"Each seed's folder is analysed on its own ({', '.join(f'[seed {s}](seed-{s}/report.md)' for s in seeds)}); "
        "each figure below is the mean over seeds with its 95% t interval.",
        "",
        *_verdict(figures),
        *skipped_lines(skipped),
        *left_out_lines(dropped or {}),
        "",
        "| figure | mean | 95% interval | per seed |",
        "|---|---|---|---|",
    ]
    for name, f in figures.items():
        interval = "-" if f["low"] is None else f"[{f['low']:.3f}, {f['high']:.3f}]"
        lines.append(f"| {name} | {f['mean']:.3f} | {interval} | {', '.join(f'{v:.3f}' for v in f['values'])} |")
    return "\n".join(lines) + "\n"
