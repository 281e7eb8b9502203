"""The run's report: a comparison shaped like the research's Table 1, each method's R matrix, plain-language
verdicts (did each method learn each task, how much did it forget), and a heat map of every R."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mhmoe.files import write_text

LEARNED_MARGIN = 5.0
"""A task counts as learned when its score right after training beats the untrained score by this many points."""


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(f"{c:.1f}" if isinstance(c, float) else str(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    return "\n".join([_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)])


def comparison_table(results: dict[str, Any]) -> str:
    """One row per method: its final score on every task, OP and BWT, and its adapter size (Table 1's shape)."""
    tasks = results["tasks"]
    header = ["method", "activated params", "total params", *tasks, "OP", "BWT"]
    base = results["base"]
    rows = [["untrained", 0, 0, *base, sum(base) / len(base), "-"]]
    for name, m in results["methods"].items():
        p = m["parameters"]
        rows.append([name, f"{p['activated']:,}", f"{p['total']:,}", *m["R"][-1], m["op"], m["bwt"]])
    return _table(header, rows)


def r_matrix_table(result: dict[str, Any], tasks: list[str], base: list[float]) -> str:
    """R with the untrained row first: row i is after training through task i, column j is task j."""
    rows = [["untrained", *base]] + [
        [f"after {i + 1} {t}", *r] for i, (t, r) in enumerate(zip(tasks, result["R"], strict=True))
    ]
    return _table(["R[i][j]", *tasks], rows)


def learned_tasks(result: dict[str, Any], base: list[float]) -> list[bool]:
    """Per task: did training on it lift its score at least LEARNED_MARGIN above the untrained model's?"""
    return [result["R"][i][i] - base[i] >= LEARNED_MARGIN for i in range(len(base))]


def verdicts(results: dict[str, Any]) -> list[str]:
    """Plain sentences on learning and forgetting, computed from R."""
    tasks, base, lines = results["tasks"], results["base"], []
    for name, m in results["methods"].items():
        learned = learned_tasks(m, base)
        missed = [t for t, ok in zip(tasks, learned, strict=True) if not ok]
        gains = ", ".join(f"{t} {base[i]:.0f}->{m['R'][i][i]:.0f}" for i, t in enumerate(tasks))
        verdict = "learned every task" if not missed else f"did not clearly learn {', '.join(missed)}"
        forgetting = (
            f"forgot {-m['bwt']:.1f} points on average (BWT {m['bwt']:.1f})"
            if m["bwt"] < 0
            else f"did not forget on average (BWT {m['bwt']:+.1f})"
        )
        lines.append(
            f"- **{name}** {verdict} (diagonal at least {LEARNED_MARGIN:.0f} points above untrained: {gains}); "
            f"it {forgetting}; OP {m['op']:.1f}."
        )
    return lines


def plot_r_matrices(results: dict[str, Any], path: Path) -> Path:
    """One heat-map panel per method: R with the untrained row on top, each cell annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, methods = results["tasks"], results["methods"]
    n = len(tasks)
    fig, axes = plt.subplots(1, len(methods), figsize=(1.1 * n * len(methods) + 1.5, 0.8 * n + 2), squeeze=False)
    rows = ["untrained", *(f"after {t}" for t in tasks)]
    for k, (ax, (name, m)) in enumerate(zip(axes[0], methods.items(), strict=True)):
        grid = [results["base"], *m["R"]]
        image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis")
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", color="white" if value < 60 else "black")
        ax.set_xticks(range(n), tasks, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(n + 1), rows if k == 0 else [], fontsize=8)  # rows are the same in every panel
        ax.set_title(f"{name}  OP {m['op']:.1f}  BWT {m['bwt']:.1f}", fontsize=10)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="score (0-100)")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def write_report(run_dir: Path, results: dict[str, Any]) -> Path:
    """report.md and R.png in the run folder."""
    plot_r_matrices(results, run_dir / "R.png")
    sections = [
        f"# Continual-learning run `{run_dir.name}`",
        f"Model `{results['model']}`, stream: {' -> '.join(results['tasks'])}. Scores are 0-100; "
        "OP is the mean of the last row of R, BWT the mean change on earlier tasks after the whole stream "
        "(negative = forgetting), FWT what earlier tasks did for a task before it was trained.",
        "## Comparison (final scores)",
        comparison_table(results),
        "## What the numbers say",
        "\n".join(verdicts(results)),
        "## R matrices",
        "![R matrices](R.png)",
    ]
    for name, m in results["methods"].items():
        seconds = f"training {m['train_seconds']:.0f} s, evaluation {m['eval_seconds']:.0f} s"
        sections += [
            f"### {name}",
            f"OP {m['op']:.1f}, BWT {m['bwt']:.1f}, FWT {m['fwt']:.1f}; {seconds}; adapter: `{m['adapter']}`",
            r_matrix_table(m, results["tasks"], results["base"]),
        ]
    path = run_dir / "report.md"
    write_text(path, "\n\n".join(sections) + "\n")
    return path
