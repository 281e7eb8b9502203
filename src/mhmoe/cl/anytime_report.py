"""The report's "any time" part: each method's anytime metrics, its scores every N steps, and their plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mhmoe.figures import pyplot, save_figure
from mhmoe.markdown import markdown_table

EXPLAINED = (
    "Every task's test set was scored every `stream.eval_every` optimizer steps. The anytime average is the area "
    "under the mean-over-all-tasks score curve divided by the steps it spans (every task counts at every point, "
    "so both stream modes face the same test sets); final OP is the mean at the last point; forgetting from "
    "peak is each task's best score minus its last, averaged over tasks (0 = nothing lost); the loss rise is "
    "each task's last answer NLL minus its lowest."
)


def anytime_table(results: dict[str, Any]) -> str:
    """One row per method with an anytime record: its four anytime metrics and each task's forgetting."""
    tasks = results["tasks"]
    header = ["method", "stream", "anytime avg", "final OP", "forgetting from peak", "loss rise from best"]
    header += [f"{t} peak-last" for t in tasks]
    rows = []
    for name, m in results["methods"].items():
        if "anytime" not in m:
            continue
        stream = "boundaries" if m.get("boundaries", True) else f"no boundaries (blur {m.get('blur')})"
        rows.append(
            [name, stream, m["anytime_avg"], m["final_op"], m["peak_forgetting"], f"{m['loss_peak_forgetting']:.3f}"]
            + m["peak_forgetting_per_task"]
        )
    return markdown_table(header, rows)


def steps_table(result: dict[str, Any], tasks: list[str]) -> str:
    """One method's anytime record: the score ± se of every task at every evaluation point."""
    record = result["anytime"]
    rows = [
        [step, *(f"{v:.1f} ± {e:.1f}" for v, e in zip(scores, errors, strict=True))]
        for step, scores, errors in zip(record["steps"], record["A"], record["A_se"], strict=True)
    ]
    return markdown_table(["step", *tasks], rows)


def plot_anytime(results: dict[str, Any], path: Path) -> Path:
    """One panel per method: every task's score over the steps of the stream, and their mean (bold)."""
    plt = pyplot()
    methods = {n: m for n, m in results["methods"].items() if "anytime" in m}
    fig, axes = plt.subplots(1, len(methods), figsize=(3.8 * len(methods), 3.2), squeeze=False, sharey=True)
    for ax, (name, m) in zip(axes[0], methods.items(), strict=True):
        steps, scores = m["anytime"]["steps"], m["anytime"]["A"]
        for j, task in enumerate(results["tasks"]):
            ax.plot(steps, [row[j] for row in scores], marker=".", label=task)
        ax.plot(steps, [sum(row) / len(row) for row in scores], color="black", linewidth=2, label="mean")
        ax.set_title(f"{name}  anytime avg {m['anytime_avg']:.1f}", fontsize=9)
        ax.set_xlabel("optimizer step of the stream")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("score (0-100)")
    axes[0][0].legend(fontsize=7)
    return save_figure(fig, path)
