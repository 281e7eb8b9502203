"""The analysis as pictures and as a report section that states plainly what the numbers say."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mhmoe.analysis import plots
from mhmoe.analysis.tokens import FEATURES

PER_TASK_PARTS = "N_eff, route-wise forgetting and the attribution"
"""The parts of the analysis that compare a MoE method's adapters after consecutive tasks."""


def _mean(values: Iterable[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else float("nan")


def _undefined(values: list[float | None]) -> str:
    """' (k of n layers undefined, left out)' where a mean over layers left values out, else ''."""
    missing = sum(v is None or not np.isfinite(v) for v in values)
    return f" ({missing} of {len(values)} layers undefined, left out)" if missing else ""


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
        excess = {m: {kind: _excess(r, kind) for kind in ("path", "per_head")} for m, r in routes.items()}
        for m, r in routes.items():
            if r["heads"] == 1:
                excess[m]["per_head"] = None
        pictures["n_eff_by_layer"] = plots.n_eff_by_layer(layers, excess, out / "n_eff_by_layer.png")
        pictures["forgetting_vs_n_eff"] = plots.forgetting_vs_n_eff(routes, out / "forgetting_vs_n_eff.png")
        attribution = {m: r["attribution"]["A"] for m, r in routes.items()}
        pictures["forgetting_attribution"] = plots.forgetting_attribution(
            analysis["tasks"], attribution, out / "forgetting_attribution.png"
        )
    return pictures


def _excess(route: dict[str, Any], kind: str) -> dict[str, list[float | None]]:
    """Per layer, the pair N_eff's excess over its null and the null's sd, for `kind` (path or per_head)."""
    pair = [layer[kind]["pair"] for layer in route["n_eff"]]
    return {"excess": [p["excess"] for p in pair], "sd": [p["null_sd"] for p in pair]}


def _compare(a: dict[str, list], b: dict[str, list]) -> tuple[int, int, int]:
    """Layers where a's excess is below b's by more than twice the nulls' combined sd, above, or neither."""
    lower = higher = neither = 0
    for ea, sa, eb, sb in zip(a["excess"], a["sd"], b["excess"], b["sd"], strict=True):
        if None in (ea, sa, eb, sb):
            neither += 1
            continue
        gap, spread = ea - eb, 2 * np.hypot(sa, sb)
        lower, higher, neither = lower + (gap < -spread), higher + (gap > spread), neither + (abs(gap) <= spread)
    return lower, higher, neither


def _below_chance(route: dict[str, Any], kind: str) -> str:
    e = _excess(route, kind)
    pairs = [(x, sd) for x, sd in zip(e["excess"], e["sd"], strict=True) if x is not None and sd is not None]
    below = sum(x < -2 * sd for x, sd in pairs)
    above = sum(x > 2 * sd for x, sd in pairs)
    return (
        f"excess {_mean(e['excess']):+.2f} (mean over layers; below chance by > 2 null sd in {below} of "
        f"{len(e['excess'])} layers, above in {above}){_undefined(e['excess'])}"
    )


def _verdict_n_eff(routes: dict[str, Any]) -> list[str]:
    """Each method's pair N_eff against its permutation null, and MH-MoE against LoRAMoE by the excess."""
    lines = []
    for method, r in routes.items():
        observed = [layer["path"]["plug_in"]["observed"] for layer in r["n_eff"]]
        plug_in = _mean(observed)
        per_head = f"; per head {_below_chance(r, 'per_head')}" if r["heads"] > 1 else ""
        lines.append(
            f"- **{method}, compositions per route against chance**: pair N_eff minus its permutation null, "
            f"path-wise {_below_chance(r, 'path')}{per_head}. Plug-in N_eff (eq. 9, capped by the tokens per "
            f"route, not comparable across route counts): {plug_in:.2f}{_undefined(observed)}."
        )
    if "loramoe" not in routes or "mhmoe" not in routes:
        return lines
    lo, mh = routes["loramoe"], routes["mhmoe"]
    n = len(lo["n_eff"])
    lower, higher, neither = _compare(_excess(mh, "path"), _excess(lo, "path"))
    head_lower, head_higher, _ = _compare(_excess(mh, "per_head"), _excess(lo, "path"))
    answer = "yes" if lower == n else "no" if lower == 0 else "in part"
    lines.append(
        f"- **Do MH-MoE's routes mix fewer compositions than LoRAMoE's, beyond chance?** {answer}: by the pair "
        f"N_eff's excess over its null, path-wise MH-MoE is lower by more than twice the nulls' spread in {lower} "
        f"of {n} layers, higher in {higher}, indistinguishable in {neither}; head by head (each head's bank has as "
        f"many routes as LoRAMoE's router) lower in {head_lower}, higher in {head_higher}. One seed: its "
        "interval over seeds comes from `mhmoe analyze` on a multi-seed run."
    )
    return lines


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
        f"[{c['low']:.2f}, {c['high']:.2f}] (bootstrap over {r['old_examples']} examples, {c['draws']} draws) over "
        f"{c['routes']} routes; old-task loss {r['old_loss_before']:.3f} -> {r['old_loss_after']:.3f} "
        f"({r['before']} -> {r['after']})."
    )


def _verdict_attribution(method: str, r: dict[str, Any], tasks: list[str]) -> list[str]:
    """One line per pair of tasks whose loss rose: A[j][i] and the route most of the damaged tokens' loss change
    sits on (where the damaged tokens were routed, not which expert's update did it: see _verdict_causal)."""
    a, carriers = r["attribution"]["A"], r["attribution"]["routes"]
    lines = []
    for j, row in enumerate(a):
        for i, value in enumerate(row):
            if value is None or value <= 0:
                continue
            top = max(carriers[f"{j},{i}"], key=lambda c: c["term"])
            lines.append(
                f"  - training {tasks[j]} raised {tasks[i]}'s loss by {value:.3f}; the damaged tokens that "
                f"{top['module']} sent down route {top['route']} hold {top['term']:+.3f} of it "
                f"({top['term'] / value:.0%}, {top['tokens']} tokens)"
            )
    head = f"- **Which training step damaged which task, and where were the damaged tokens routed ({method})?**"
    return [head + (" No task's loss rose." if not lines else ""), *lines, *_verdict_causal(r, tasks)]


def _verdict_causal(r: dict[str, Any], tasks: list[str]) -> list[str]:
    """Per pair of tasks, the expert whose update, put back alone, explains most of the change (causal.py)."""
    lines = []
    for pair, c in r.get("causal_attribution", {}).items():
        j, i = (int(x) for x in pair.split(","))
        top = c["top"][0]
        share = f" ({c['sum_of_effects'] / c['total']:.0%} of it)" if c["total"] else ""
        lines.append(
            f"  - cause, {tasks[j]} on {tasks[i]}: putting back {top['module']} head {top['head']} expert "
            f"{top['expert']} alone to before {tasks[j]} changes the answer loss by {-top['effect']:+.3f} "
            f"(se {top['se']:.3f}) of the {c['total']:+.3f} rise; every put-back expert's effects sum to "
            f"{c['sum_of_effects']:+.3f}{share}"
        )
    return lines


def skipped_lines(skipped: dict[str, str], where: str = "") -> list[str]:
    """One line per MoE method whose per-task parts were not computed, with the reason."""
    return [f"- {where}**{method}**: {PER_TASK_PARTS} skipped: {reason}." for method, reason in skipped.items()]


def report_section(analysis: dict[str, Any], pictures: dict[str, Path], folder: Path) -> str:
    """The report's '## Analysis' section: findings first, then every picture."""
    lines = [
        "## Analysis",
        "",
        f"{analysis['tokens']} tokens, {analysis['compositions']} compositions "
        f"({', '.join(FEATURES)}), layers {analysis['layers']}, {analysis['heads']} head slices. "
        f"Probes (split by example), head shares and gradient cosines (exact per-token gradients of "
        f"{analysis['gradient_tokens']} tokens) read the frozen base model on training examples; N_eff, "
        f"route-wise forgetting and the attribution read the {analysis['settings']['forgetting_split']} examples "
        f"({analysis['settings'].get('forgetting_tokens', 'all')} tokens' losses).",
        "",
    ]
    for feature, rows in analysis["probes"].items():
        acc, chance = _mean(rows["accuracy"]), _mean(rows["chance"])
        if np.isnan(acc):
            lines.append(f"- {feature}: one value only in these data, not probed.")
        else:
            lines.append(
                f"- {feature}: probe accuracy {acc:.2f} vs chance {chance:.2f} (mean over layers)"
                f"{_undefined(rows['accuracy'])}."
            )
    cos = analysis["gradient_cosines"]
    coherence = _mean([np.mean(v["coherence"]) for v in cos.values() if v["coherence"]])
    cross = _mean([np.mean(v["cross"]) for v in cos.values() if v["cross"]])
    lines.append(
        f"- Gradient cosines: within a composition {coherence:.2f} (halves by example), across compositions "
        f"{cross:.2f} (means)."
    )
    lines += _verdict_n_eff(analysis["routes"])
    lines += [_verdict_forgetting(m, r) for m, r in analysis["routes"].items()]
    for m, r in analysis["routes"].items():
        lines += _verdict_attribution(m, r, analysis["tasks"])
    lines += skipped_lines(analysis["skipped"])
    if not analysis["routes"] and not analysis["skipped"]:
        lines.append("- No MoE method in this run: N_eff and route-wise forgetting need a loramoe or mhmoe adapter.")
    lines.append("")
    lines += [f"![{name}]({folder / path.name})" for name, path in pictures.items()]
    return "\n".join(lines) + "\n"
