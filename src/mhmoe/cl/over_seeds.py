"""A run over several seeds: each method's metrics as mean and 95% interval over seeds, the paired differences
against a reference method, and verdict sentences that follow from those intervals alone.

A seed is the independent unit: it draws the data sample, the adapter initialisation and the batch order, so
the spread over seeds is what a re-run would show. Two methods on the same seeds are compared by their per-seed
differences, which cancels what the seed does to both (the same data, the same order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mhmoe.cl.report import run_table
from mhmoe.figures import pyplot, save_figure
from mhmoe.files import write_text
from mhmoe.markdown import markdown_table
from mhmoe.metrics.catalog import METRICS
from mhmoe.metrics.uncertainty import Interval, paired_difference, t_interval


def metric_keys(result: dict[str, Any]) -> list[str]:
    """The METRICS one method's results hold."""
    return [key for key in METRICS if key in result]


def _values(per_seed: dict[int, dict], method: str, key: str) -> list[float]:
    return [run["methods"][method][key] for run in per_seed.values()]


def summarise_seeds(per_seed: dict[int, dict[str, Any]], reference: str | None) -> dict[str, Any]:
    """The top-level results.json of a multi-seed run: each seed's results and the intervals over seeds."""
    first = next(iter(per_seed.values()))
    tasks, methods = first["tasks"], list(first["methods"])
    summary = {}
    for method in methods:
        result = first["methods"][method]
        entry = {key: t_interval(_values(per_seed, method, key)).to_dict() for key in metric_keys(result)}
        last_rows = [run["methods"][method]["R" if "R" in result else "anytime"] for run in per_seed.values()]
        last_rows = [rows[-1] if "R" in result else rows["A"][-1] for rows in last_rows]
        entry["final"] = [t_interval([row[j] for row in last_rows]).to_dict() for j in range(len(tasks))]
        entry["parameters"] = result["parameters"]
        summary[method] = entry
    paired = {}
    if reference in methods:
        reference_keys = set(metric_keys(first["methods"][reference]))
        for method in methods:
            if method != reference:
                paired[method] = {
                    key: paired_difference(_values(per_seed, reference, key), _values(per_seed, method, key)).to_dict()
                    for key in metric_keys(first["methods"][method])
                    if key in reference_keys
                }
    return {
        "tasks": tasks,
        "model": first["model"],
        "seeds": list(per_seed),
        "reference": reference if reference in methods else None,
        "summary": summary,
        "paired": paired,
        "per_seed": {str(seed): run for seed, run in per_seed.items()},
    }


def as_interval(d: dict) -> Interval:
    """An Interval back from its results.json dict."""
    return Interval(d["mean"], d["low"], d["high"], d["n"])


START = {"bwt": "learned", "loss_bwt": "learned_loss"}
"""Where each forgetting measure starts from: a method that learned the earlier tasks less has less to lose."""


def _caveat(key: str, metrics: dict[str, Any]) -> str:
    """A warning when a resolved forgetting gap comes with a resolved gap in how well the tasks were learned."""
    start = START.get(key)
    if start not in metrics or not as_interval(metrics[start]).excludes_zero():
        return ""
    return (
        f" Caution: the two also learned the earlier tasks to different levels ({METRICS[start][0]} difference "
        f"{as_interval(metrics[start])}), which alone moves {METRICS[key][0]}: compare the final scores and losses."
    )


def seed_verdicts(results: dict[str, Any]) -> list[str]:
    """One sentence per (method, metric) against the reference: a claim only where the paired interval excludes 0."""
    reference, n, lines = results["reference"], len(results["seeds"]), []
    for method, metrics in results["paired"].items():
        for key, d in metrics.items():
            label, direction, better = METRICS[key]
            interval = as_interval(d)
            numbers = f"{reference} - {method} = {interval} over {n} seeds, sign agrees in {d['agreeing']}/{n}"
            if interval.excludes_zero():
                winner, loser = (reference, method) if interval.mean * direction > 0 else (method, reference)
                lines.append(f"- {label}: **{winner}** {better} than {loser} ({numbers}).{_caveat(key, metrics)}")
            else:
                lines.append(f"- {label}: {reference} vs {method} not resolved with {n} seeds ({numbers}).")
    return lines


def _keys(entries: Any) -> list[str]:
    """The METRICS any of these per-method mappings holds, in METRICS' order."""
    return [key for key in METRICS if any(key in entry for entry in entries)]


def seeds_table(results: dict[str, Any]) -> str:
    """Per method: mean [95% interval] over seeds of each metric it has and each task's final score."""
    tasks = results["tasks"]
    keys = _keys(results["summary"].values())
    header = ["method", "activated params", "total params", *(METRICS[key][0] for key in keys), *tasks]
    rows = []
    for method, entry in results["summary"].items():
        metrics = [str(as_interval(entry[key])) if key in entry else "-" for key in keys]
        finals = [str(as_interval(d)) for d in entry["final"]]
        counts = [f"{entry['parameters'][k]:,}" for k in ("activated", "total")]
        rows.append([method, *counts, *metrics, *finals])
    return markdown_table(header, rows)


def paired_table(results: dict[str, Any]) -> str:
    """Per method: the reference's paired difference against it, with its interval and sign agreement."""
    n, keys = len(results["seeds"]), _keys(results["paired"].values())
    header = ["reference - method", *(METRICS[key][0] for key in keys)]
    rows = []
    for method, metrics in results["paired"].items():
        cells = [
            f"{as_interval(metrics[key])} ({metrics[key]['agreeing']}/{n})" if key in metrics else "-" for key in keys
        ]
        rows.append([f"{results['reference']} - {method}", *cells])
    return markdown_table(header, rows)


def plot_seeds(results: dict[str, Any], path: Path) -> Path:
    """One panel per metric: every seed's value as a dot, and the mean with its 95% interval, per method."""
    plt = pyplot()

    methods, keys = list(results["summary"]), _keys(results["summary"].values())
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        label, direction, _ = METRICS[key]
        for x, method in enumerate(methods):
            if key not in results["summary"][method]:
                continue
            values = [run["methods"][method][key] for run in results["per_seed"].values()]
            ax.scatter([x] * len(values), values, s=14, alpha=0.6, color="tab:gray")
            interval = as_interval(results["summary"][method][key])
            if interval.low is not None:
                ax.errorbar(
                    x + 0.15,
                    interval.mean,
                    yerr=[[interval.mean - interval.low], [interval.high - interval.mean]],
                    fmt="o",
                    color="tab:blue",
                    capsize=4,
                )
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{label} ({'higher' if direction > 0 else 'lower'} is better)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{len(results['seeds'])} seeds: dots are seeds, blue is the mean and its 95% t interval", fontsize=9)
    return save_figure(fig, path)


def write_seeds_report(run_dir: Path, results: dict[str, Any], claims: str = "") -> Path:
    """report.md and seeds.png at the top of a multi-seed run folder; `claims` is the declared claims' section."""
    plot_seeds(results, run_dir / "seeds.png")
    seeds, n = results["seeds"], len(results["seeds"])
    sections = [
        f"# Continual-learning run `{run_dir.name}` over {n} seeds",
        f"Model `{results['model']}`, stream: {' -> '.join(results['tasks'])}; seeds {seeds}. Each cell is the "
        "mean over seeds with its 95% Student-t interval. OP and BWT are in points (0-100; BWT < 0 is forgetting); "
        "loss-BWT is the mean rise of earlier tasks' answer NLL in nats per token (> 0 is forgetting).",
        "## Over seeds",
        seeds_table(results),
        "![per-seed values](seeds.png)",
    ]
    if claims:
        sections.append(claims)
    if results["paired"]:
        n_tests = sum(len(metrics) for metrics in results["paired"].values())
        sections += [
            f"## Paired against {results['reference']} (exploratory)",
            f"Per-seed differences {results['reference']} - method, their mean and 95% interval, and in how many "
            f"seeds the difference has the mean's sign. These are {n_tests} intervals at a nominal 95% each, with "
            "no correction for their number: read them as exploratory, never as findings (the findings of a run "
            "are its declared claims).",
            paired_table(results),
            "## What each interval alone says (exploratory)",
            "\n".join(seed_verdicts(results)),
        ]
    sections.append("## Each seed")
    for seed, run in results["per_seed"].items():
        sections += [f"### seed {seed} ([report](seed-{seed}/report.md))", run_table(run)]
    path = run_dir / "report.md"
    write_text(path, "\n\n".join(sections) + "\n")
    return path
