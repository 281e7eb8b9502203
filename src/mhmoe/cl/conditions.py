"""A run repeated over conditions (task orders, or stream modes with and without task boundaries): does a
method's advantage survive the change?

Each condition is a complete run (every method, every seed) in its own folder; the top results.json and
report.md put the conditions side by side: each method's metrics per condition with their intervals over
seeds, the reference's paired difference per condition and in how many conditions it points the same way,
and how the reference's gap to each method changes from the first condition to each other one (per seed,
since every condition runs on the same seeds). Conditions are fixed, not samples: no interval is pooled
across them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mhmoe.cl.over_seeds import METRICS, as_interval
from mhmoe.figures import pyplot, save_figure
from mhmoe.files import write_text
from mhmoe.markdown import markdown_table
from mhmoe.metrics.uncertainty import paired_difference

PREFERRED = ("op", "bwt", "loss_bwt", "anytime_avg", "final_op", "peak_forgetting", "loss_peak_forgetting")
"""The metrics compared across conditions, where every condition has them (FWT stays in each run's report)."""


def shown_metrics(per_condition: dict[str, dict[str, Any]]) -> list[str]:
    """The preferred metrics every method of every condition has (modes without boundaries have no R)."""
    return [
        key
        for key in PREFERRED
        if all(key in entry for s in per_condition.values() for entry in s["summary"].values())
    ]


def _agreement(diffs: list[dict], direction: int) -> dict[str, int]:
    return {
        "reference_better": sum(d["mean"] * direction > 0 for d in diffs),
        "resolved_reference_better": sum(as_interval(d).excludes_zero() and d["mean"] * direction > 0 for d in diffs),
        "resolved_method_better": sum(as_interval(d).excludes_zero() and d["mean"] * direction < 0 for d in diffs),
        "conditions": len(diffs),
    }


def summarise_conditions(per_condition: dict[str, dict[str, Any]], reference: str | None, kind: str) -> dict:
    """The top results.json of a repeated run, from each condition's summary over seeds.

    `kind` names what varies ('order' or 'mode'). `gap_change[method][condition][key]` is the per-seed change
    of (reference - method) from the first condition to that one, with its interval.
    """
    first_name, first = next(iter(per_condition.items()))
    methods, keys = list(first["summary"]), shown_metrics(per_condition)
    agreement, gap_change = {}, {}
    for method in methods if reference in methods else []:
        if method == reference:
            continue
        agreement[method] = {
            key: _agreement([s["paired"][method][key] for s in per_condition.values()], METRICS[key][1])
            for key in keys
        }
        gap_change[method] = {
            name: {
                key: paired_difference(
                    s["paired"][method][key]["differences"], first["paired"][method][key]["differences"]
                ).to_dict()
                for key in keys
            }
            for name, s in per_condition.items()
            if name != first_name and s["seeds"] == first["seeds"]
        }
    return {
        "model": first["model"],
        "kind": kind,
        "reference": reference if reference in methods else None,
        "metrics": keys,
        "conditions": {
            name: {k: s[k] for k in ("tasks", "seeds", "summary", "paired")} for name, s in per_condition.items()
        },
        "agreement": agreement,
        "gap_change": gap_change,
    }


def conditions_table(results: dict[str, Any]) -> str:
    """One row per (condition, method): each shown metric's mean [95% interval] over seeds."""
    keys = results["metrics"]
    header = [results["kind"], "method", *(METRICS[key][0] for key in keys)]
    rows = []
    for name, condition in results["conditions"].items():
        for method, entry in condition["summary"].items():
            rows.append([name, method, *(str(as_interval(entry[key])) for key in keys)])
    return markdown_table(header, rows)


def paired_conditions_table(results: dict[str, Any]) -> str:
    """One row per (condition, method): the reference's paired difference per metric and its sign agreement."""
    keys = results["metrics"]
    header = [results["kind"], "reference - method", *(METRICS[key][0] for key in keys)]
    rows = []
    for name, condition in results["conditions"].items():
        n = len(condition["seeds"])
        for method, metrics in condition["paired"].items():
            cells = [f"{as_interval(metrics[key])} ({metrics[key]['agreeing']}/{n})" for key in keys]
            rows.append([name, f"{results['reference']} - {method}", *cells])
    return markdown_table(header, rows)


def gap_change_table(results: dict[str, Any]) -> str:
    """One row per (method, condition after the first): the change of the reference's gap to the method."""
    keys, first = results["metrics"], next(iter(results["conditions"]))
    header = ["gap reference - method", *(METRICS[key][0] for key in keys)]
    rows = []
    for method, changes in results["gap_change"].items():
        for name, metrics in changes.items():
            label = f"{results['reference']} - {method}: {name} minus {first}"
            rows.append([label, *(f"{as_interval(metrics[key])}" for key in keys)])
    return markdown_table(header, rows)


def condition_verdicts(results: dict[str, Any]) -> list[str]:
    """Per method and metric: in how many conditions the reference is ahead, and in how many that is resolved;
    then every gap change whose interval excludes 0."""
    reference, kind, lines = results["reference"], results["kind"], []
    for method, metrics in results["agreement"].items():
        for key, a in metrics.items():
            label, _, better = METRICS[key]
            lines.append(
                f"- {label}: {reference} {better} than {method} in {a['reference_better']} of {a['conditions']} "
                f"{kind}s (resolved in {a['resolved_reference_better']}; {method} resolved ahead in "
                f"{a['resolved_method_better']})."
            )
    first = next(iter(results["conditions"]))
    for method, changes in results["gap_change"].items():
        for name, metrics in changes.items():
            moved = [METRICS[key][0] for key, d in metrics.items() if as_interval(d).excludes_zero()]
            what = f"changes in {', '.join(moved)}" if moved else "does not change resolvably in any metric"
            lines.append(f"- The gap {reference} - {method} from {first} to {name} {what}.")
    return lines


def plot_conditions(results: dict[str, Any], path: Path) -> Path:
    """One panel per metric: each method's mean and 95% interval over seeds, condition by condition."""
    plt = pyplot()
    names, keys = list(results["conditions"]), results["metrics"]
    methods = list(next(iter(results["conditions"].values()))["summary"])
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    width = 0.8 / len(methods)
    for ax, key in zip(axes[0], keys, strict=True):
        for k, method in enumerate(methods):
            xs, means, below, above = [], [], [], []
            for x, name in enumerate(names):
                interval = as_interval(results["conditions"][name]["summary"][method][key])
                xs.append(x - 0.4 + width * (k + 0.5))
                means.append(interval.mean)
                below.append(interval.mean - (interval.low if interval.low is not None else interval.mean))
                above.append((interval.high if interval.high is not None else interval.mean) - interval.mean)
            ax.errorbar(xs, means, yerr=[below, above], fmt="o", capsize=3, label=method)
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_title(METRICS[key][0], fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"mean and 95% t interval over seeds, per {results['kind']}", fontsize=9)
    return save_figure(fig, path)


def write_conditions_report(run_dir: Path, results: dict[str, Any]) -> Path:
    """report.md and conditions.png at the top of a run repeated over orders or modes."""
    plot_conditions(results, run_dir / "conditions.png")
    kind = results["kind"]
    sections = [
        f"# Continual-learning run `{run_dir.name}` over {len(results['conditions'])} {kind}s",
        f"Model `{results['model']}`. Each {kind} is a complete run in its own folder; each cell is the mean over "
        "its seeds with the 95% Student-t interval (scores in points, losses in nats per token).",
        "\n".join(
            f"- [{name}]({name}/report.md): {' -> '.join(c['tasks'])}; seeds {c['seeds']}"
            for name, c in results["conditions"].items()
        ),
        f"## By {kind}",
        conditions_table(results),
        f"![methods per {kind}](conditions.png)",
    ]
    if results["reference"]:
        sections += [
            f"## Paired against {results['reference']}, {kind} by {kind}",
            paired_conditions_table(results),
        ]
        if any(results["gap_change"].values()):
            sections += [
                f"## How the gaps change between {kind}s",
                "Per seed, the reference's gap to a method in one condition minus the same gap in the first: "
                "a difference of paired differences, with its 95% interval over seeds.",
                gap_change_table(results),
            ]
        sections += ["## What the numbers say", "\n".join(condition_verdicts(results))]
    path = run_dir / "report.md"
    write_text(path, "\n\n".join(sections) + "\n")
    return path
