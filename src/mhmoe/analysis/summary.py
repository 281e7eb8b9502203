"""The analysis as pictures and as a report section that states plainly what the numbers say."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mhmoe.analysis import plots
from mhmoe.analysis.tokens import FEATURES


def _mean(values: Iterable[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else float("nan")


def draw(analysis: dict[str, Any], out: Path) -> dict[str, Path]:
    """Every picture the analysis supports; the route pictures need at least one MoE method."""
    layers = analysis["layers"]
    probes = {
        f: {k: [np.nan if v is None else v for v in rows[k]] for k in ("accuracy", "chance")}
        for f, rows in analysis["probes"].items()
    }
    overlap = np.array(
        [
            [_mean(layer[i][j] for layer in analysis["overlap"]) for j in range(len(FEATURES))]
            for i in range(len(FEATURES))
        ]
    )
    shares = {
        f: [s if s is not None else [np.nan] * analysis["heads"] for s in rows["head_shares"]]
        for f, rows in analysis["probes"].items()
    }
    coherence = np.concatenate([np.array(v["coherence"]) for v in analysis["gradient_cosines"].values()])
    cross = np.concatenate([np.array(v["cross"]) for v in analysis["gradient_cosines"].values()])
    pictures = {
        "probe_accuracy": plots.probe_accuracy(layers, probes, out / "probe_accuracy.png"),
        "subspace_overlap": plots.subspace_overlap(list(FEATURES), overlap, out / "subspace_overlap.png"),
        "head_shares": plots.head_shares(layers, shares, out / "head_shares.png"),
        "gradient_cosines": plots.gradient_cosines(coherence, cross, out / "gradient_cosines.png"),
    }
    routes = analysis["routes"]
    if routes:
        by_layer = {
            m: {"path": r["path"], "per_head": r["per_head"] if r["heads"] > 1 else None} for m, r in routes.items()
        }
        pictures["n_eff_by_layer"] = plots.n_eff_by_layer(layers, by_layer, out / "n_eff_by_layer.png")
        pictures["forgetting_vs_n_eff"] = plots.forgetting_vs_n_eff(routes, out / "forgetting_vs_n_eff.png")
    return pictures


def _verdict_n_eff(routes: dict[str, Any]) -> list[str]:
    if "loramoe" not in routes or "mhmoe" not in routes:
        return []
    lo, mh = routes["loramoe"], routes["mhmoe"]
    lower = sum(a < b for a, b in zip(mh["path"], lo["path"], strict=True))
    lower_head = sum(a < b for a, b in zip(mh["per_head"], lo["path"], strict=True))
    n = len(lo["path"])
    return [
        f"- **Is MH-MoE's N_eff lower than LoRAMoE's?** Routing the whole tuple of heads (path-wise), "
        f"{'yes' if lower == n else 'no' if lower == 0 else 'in part'}: lower in {lower} of {n} layers "
        f"(mean {np.mean(mh['path']):.2f} vs {np.mean(lo['path']):.2f}). Head by head (each head's own bank has "
        f"as many routes as LoRAMoE's one router: the like-for-like comparison), lower in {lower_head} of {n} "
        f"layers (mean {np.mean(mh['per_head']):.2f}). Path-wise routes are many and each holds few tokens, and N_eff "
        "can never exceed a route's token count, so the path-wise figure is lower partly by construction."
    ]


def _verdict_forgetting(method: str, r: dict[str, Any]) -> str:
    c = r["correlation"]
    if c is None:
        return f"- **{method}**: too few routes with enough tokens for a correlation."
    if c["low"] > 0:
        answer = "yes"
    elif c["high"] < 0:
        answer = "no, the opposite"
    else:
        answer = "not shown (the interval includes 0)"
    return (
        f"- **Does forgetting grow with N_eff for {method}?** {answer}: Spearman rho {c['rho']:.2f} "
        f"[{c['low']:.2f}, {c['high']:.2f}] over {c['routes']} routes; old-task loss "
        f"{r['old_loss_before']:.3f} -> {r['old_loss_after']:.3f} ({r['before']} -> {r['after']})."
    )


def report_section(analysis: dict[str, Any], pictures: dict[str, Path], folder: Path) -> str:
    """The report's '## Analysis' section: findings first, then every picture."""
    lines = [
        "## Analysis",
        "",
        f"{analysis['tokens']} tokens, {analysis['compositions']} compositions "
        f"({', '.join(FEATURES)}), layers {analysis['layers']}, {analysis['heads']} head slices. "
        "Probes, head shares and gradient cosines read the frozen base model.",
        "",
    ]
    for feature, rows in analysis["probes"].items():
        acc, chance = _mean(rows["accuracy"]), _mean(rows["chance"])
        if np.isnan(acc):
            lines.append(f"- {feature}: one value only in these data, not probed.")
        else:
            lines.append(f"- {feature}: probe accuracy {acc:.2f} vs chance {chance:.2f} (mean over layers).")
    cos = analysis["gradient_cosines"]
    coherence = _mean([np.mean(v["coherence"]) for v in cos.values() if v["coherence"]])
    cross = _mean([np.mean(v["cross"]) for v in cos.values() if v["cross"]])
    lines.append(f"- Gradient cosines: within a composition {coherence:.2f}, across compositions {cross:.2f} (means).")
    lines += _verdict_n_eff(analysis["routes"])
    lines += [_verdict_forgetting(m, r) for m, r in analysis["routes"].items()]
    if not analysis["routes"]:
        lines.append("- No MoE method in this run: N_eff and route-wise forgetting need a loramoe or mhmoe adapter.")
    lines.append("")
    lines += [f"![{name}]({folder / path.name})" for name, path in pictures.items()]
    return "\n".join(lines) + "\n"
