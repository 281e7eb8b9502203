"""A run over several task orders: does a method's advantage survive a change of curriculum?

Each order is a complete run (every method, every seed) in its own folder; the top results.json and report.md
put the orders side by side: each method's OP, BWT and loss-BWT per order with their intervals over seeds,
the reference's paired difference per order, and in how many orders it points the same way. Orders are
fixed conditions, not samples, so no interval is pooled across them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mhmoe.cl.report import markdown_table
from mhmoe.cl.seeds import METRICS, as_interval
from mhmoe.figures import pyplot, save_figure
from mhmoe.files import write_text

SHOWN = ("op", "bwt", "loss_bwt")
"""The metrics compared across orders (FWT stays in each order's own report)."""


def summarise_orders(per_order: dict[str, dict[str, Any]], reference: str | None) -> dict[str, Any]:
    """The top results.json of a run over orders, from each order's summary over seeds."""
    first = next(iter(per_order.values()))
    methods = list(first["summary"])
    agreement = {}
    if reference in methods:
        for method in methods:
            if method == reference:
                continue
            agreement[method] = {}
            for key in SHOWN:
                direction = METRICS[key][1]
                diffs = [s["paired"][method][key] for s in per_order.values()]
                agreement[method][key] = {
                    "reference_better": sum(d["mean"] * direction > 0 for d in diffs),
                    "resolved_reference_better": sum(
                        as_interval(d).excludes_zero() and d["mean"] * direction > 0 for d in diffs
                    ),
                    "resolved_method_better": sum(
                        as_interval(d).excludes_zero() and d["mean"] * direction < 0 for d in diffs
                    ),
                    "orders": len(diffs),
                }
    return {
        "model": first["model"],
        "reference": reference if reference in methods else None,
        "orders": {name: {k: s[k] for k in ("tasks", "seeds", "summary", "paired")} for name, s in per_order.items()},
        "agreement": agreement,
    }


def orders_table(results: dict[str, Any]) -> str:
    """One row per (order, method): OP, BWT and loss-BWT, each its mean [95% interval] over seeds."""
    header = ["order", "method", *(METRICS[key][0] for key in SHOWN)]
    rows = []
    for name, order in results["orders"].items():
        for method, entry in order["summary"].items():
            rows.append([name, method, *(str(as_interval(entry[key])) for key in SHOWN)])
    return markdown_table(header, rows)


def paired_orders_table(results: dict[str, Any]) -> str:
    """One row per (order, method): the reference's paired difference per metric and its sign agreement."""
    header = ["order", "reference - method", *(METRICS[key][0] for key in SHOWN)]
    rows = []
    for name, order in results["orders"].items():
        n = len(order["seeds"])
        for method, metrics in order["paired"].items():
            cells = [f"{as_interval(metrics[key])} ({metrics[key]['agreeing']}/{n})" for key in SHOWN]
            rows.append([name, f"{results['reference']} - {method}", *cells])
    return markdown_table(header, rows)


def order_verdicts(results: dict[str, Any]) -> list[str]:
    """Per method and metric: in how many orders the reference is ahead, and in how many that is resolved."""
    reference, lines = results["reference"], []
    for method, metrics in results["agreement"].items():
        for key, a in metrics.items():
            label, _, better = METRICS[key]
            lines.append(
                f"- {label}: {reference} {better} than {method} in {a['reference_better']} of {a['orders']} orders "
                f"(resolved in {a['resolved_reference_better']}; {method} resolved ahead in "
                f"{a['resolved_method_better']})."
            )
    return lines


def plot_orders(results: dict[str, Any], path: Path) -> Path:
    """One panel per metric: each method's mean and 95% interval over seeds, order by order."""
    plt = pyplot()

    orders = list(results["orders"])
    methods = list(next(iter(results["orders"].values()))["summary"])
    fig, axes = plt.subplots(1, len(SHOWN), figsize=(4.2 * len(SHOWN), 3.4), squeeze=False)
    width = 0.8 / len(methods)
    for ax, key in zip(axes[0], SHOWN, strict=True):
        for k, method in enumerate(methods):
            xs, means, lows, highs = [], [], [], []
            for x, name in enumerate(orders):
                interval = as_interval(results["orders"][name]["summary"][method][key])
                xs.append(x - 0.4 + width * (k + 0.5))
                means.append(interval.mean)
                lows.append(interval.mean - (interval.low if interval.low is not None else interval.mean))
                highs.append((interval.high if interval.high is not None else interval.mean) - interval.mean)
            ax.errorbar(xs, means, yerr=[lows, highs], fmt="o", capsize=3, label=method)
        ax.set_xticks(range(len(orders)), orders, fontsize=8)
        ax.set_title(METRICS[key][0], fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("mean and 95% t interval over seeds, per task order", fontsize=9)
    return save_figure(fig, path)


def write_orders_report(run_dir: Path, results: dict[str, Any]) -> Path:
    """report.md and orders.png at the top of a run over several task orders."""
    plot_orders(results, run_dir / "orders.png")
    sections = [
        f"# Continual-learning run `{run_dir.name}` over {len(results['orders'])} task orders",
        f"Model `{results['model']}`. Each order is a complete run in its own folder; each cell is the mean over "
        "its seeds with the 95% Student-t interval (OP and BWT in points, loss-BWT in nats per token).",
        "\n".join(
            f"- [{name}]({name}/report.md): {' -> '.join(order['tasks'])}; seeds {order['seeds']}"
            for name, order in results["orders"].items()
        ),
        "## By order",
        orders_table(results),
        "![methods per order](orders.png)",
    ]
    if results["reference"]:
        sections += [
            f"## Paired against {results['reference']}, order by order",
            paired_orders_table(results),
            "## What the numbers say",
            "\n".join(order_verdicts(results)),
        ]
    path = run_dir / "report.md"
    write_text(path, "\n\n".join(sections) + "\n")
    return path
