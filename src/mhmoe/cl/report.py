"""The run's report: a comparison shaped like the research's Table 1, each method's R matrix with its standard
errors and its loss matrix L, plain-language verdicts (did each method learn each task, how much did it
forget), the router facts that decide how an MoE row can be read, a heat map of every R and loss curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mhmoe.cl.anytime_report import EXPLAINED, anytime_table, plot_anytime, steps_table
from mhmoe.cl.router_facts import ROUTERS_FIXED_NOTE
from mhmoe.figures import pyplot, save_figure
from mhmoe.files import write_text
from mhmoe.markdown import markdown_table

LEARNED_MARGIN = 5.0
"""A task counts as learned when its score right after training beats its floor by this many points."""


def learning_floor(results: dict[str, Any]) -> list[float]:
    """Per task, what training must beat: the untrained score, or always giving the most common test answer
    if that scores higher (runs from before the majority baseline was recorded have only the first)."""
    majority = results.get("majority") or results["base"]
    return [max(b, m) for b, m in zip(results["base"], majority, strict=True)]


def comparison_table(results: dict[str, Any]) -> str:
    """One row per method: its final score on every task, OP, BWT and loss-BWT, and its adapter size (Table 1's
    shape)."""
    tasks = results["tasks"]
    header = ["method", "activated params", "total params", *tasks, "OP", "BWT", "loss-BWT"]
    base = results["base"]
    rows = [["untrained", 0, 0, *base, sum(base) / len(base), "-", "-"]]
    for name, m in results["methods"].items():
        p = m["parameters"]
        loss = f"{m['loss_bwt']:+.3f}"
        rows.append([name, f"{p['activated']:,}", f"{p['total']:,}", *m["R"][-1], m["op"], m["bwt"], loss])
    return markdown_table(header, rows)


def run_table(results: dict[str, Any]) -> str:
    """A one-seed run's headline table: the comparison of final scores, or the anytime metrics without R."""
    if all("R" in m for m in results["methods"].values()):
        return comparison_table(results)
    return anytime_table(results)


def _with_errors(values: list[float], errors: list[float]) -> list[str]:
    return [f"{v:.1f} ± {e:.1f}" for v, e in zip(values, errors, strict=True)]


def r_matrix_table(
    result: dict[str, Any], tasks: list[str], base: list[float], base_se: list[float], majority: list[float] | None
) -> str:
    """R ± its standard error over test examples, the untrained row (and the most-common-answer row) first: row
    i is after training through task i, column j is task j."""
    rows = [["untrained", *_with_errors(base, base_se)]]
    if majority:
        rows.append(["most common answer", *(f"{v:.1f}" for v in majority)])
    for i, (task, r, se) in enumerate(zip(tasks, result["R"], result["R_se"], strict=True)):
        rows.append([f"after {i + 1} {task}", *_with_errors(r, se)])
    return markdown_table(["R[i][j] ± se", *tasks], rows)


def loss_matrix_table(result: dict[str, Any], tasks: list[str], base_loss: list[float]) -> str:
    """L (answer NLL, nats per token), the untrained row first."""
    rows = [["untrained", *(f"{v:.3f}" for v in base_loss)]]
    for i, (task, r) in enumerate(zip(tasks, result["L"], strict=True)):
        rows.append([f"after {i + 1} {task}", *(f"{v:.3f}" for v in r)])
    return markdown_table(["L[i][j]", *tasks], rows)


def identification_table(result: dict[str, Any], tasks: list[str]) -> str:
    """Percent of each task's test prompts a prefix method assigned to their own task, after each task ('-': the
    task had no prototype yet, so it could not be chosen)."""
    rows = []
    for i, (task, row) in enumerate(zip(tasks, result["identified"], strict=True)):
        rows.append([f"after {i + 1} {task}", *("-" if v is None else f"{v:.1f}" for v in row)])
    return markdown_table(["task identified %", *tasks], rows)


def identification_lines(results: dict[str, Any]) -> list[str]:
    """The task-identification section: what 'infer' mode can score at best, per method and task."""
    lines = []
    for name, m in results["methods"].items():
        if m.get("identified"):
            final = ", ".join(
                f"{t} {v:.0f}%" for t, v in zip(results["tasks"], m["identified"][-1], strict=True) if v is not None
            )
            lines += [f"**{name}** after the last task: {final}.", identification_table(m, results["tasks"])]
    return lines


def router_lines(name: str, router: dict[str, Any] | None) -> list[str]:
    """The router facts of one MoE method: did its routers train, and how evenly its heads spread tokens."""
    if router is None:
        return []
    trained = router["trained"]
    lines = [f"**{name}**: routers received gradient in {sum(trained.values())} of {len(trained)} MoE layers."]
    if router["fixed_by_design"]:
        lines.append(f"By design: {ROUTERS_FIXED_NOTE}.")
    entropies = [e for layer in router["load"].values() for e in layer["entropy"]]
    shares = [max(head) for layer in router["load"].values() for head in layer["share"]]
    lines.append(
        f"Expert load over the test tokens after the last task, per (layer, head): normalised entropy "
        f"min {min(entropies):.2f}, mean {sum(entropies) / len(entropies):.2f} (1 = uniform); the busiest expert "
        f"takes {max(shares):.0%} of a head's tokens at most, {sum(shares) / len(shares):.0%} on average "
        "(per-layer detail in results.json)."
    )
    return [" ".join(lines)]


def learned_tasks(result: dict[str, Any], floor: list[float]) -> list[bool]:
    """Per task: did training on it lift its score at least LEARNED_MARGIN above its floor?"""
    return [result["R"][i][i] - floor[i] >= LEARNED_MARGIN for i in range(len(floor))]


def verdicts(results: dict[str, Any]) -> list[str]:
    """Plain sentences on learning and forgetting, computed from R."""
    tasks, floor, lines = results["tasks"], learning_floor(results), []
    against = "untrained or the most common answer" if "majority" in results else "untrained"
    for name, m in results["methods"].items():
        learned = learned_tasks(m, floor)
        missed = [t for t, ok in zip(tasks, learned, strict=True) if not ok]
        gains = ", ".join(f"{t} {floor[i]:.0f}->{m['R'][i][i]:.0f}" for i, t in enumerate(tasks))
        verdict = "learned every task" if not missed else f"did not clearly learn {', '.join(missed)}"
        forgetting = (
            f"forgot {-m['bwt']:.1f} points on average (BWT {m['bwt']:.1f})"
            if m["bwt"] < 0
            else f"did not forget on average (BWT {m['bwt']:+.1f})"
        )
        lines.append(
            f"- **{name}** {verdict} (diagonal at least {LEARNED_MARGIN:.0f} points above {against}: {gains}); "
            f"it {forgetting}; OP {m['op']:.1f}."
        )
    return lines


def plot_r_matrices(results: dict[str, Any], path: Path) -> Path:
    """One heat-map panel per method: R with the untrained row on top, each cell annotated."""
    plt = pyplot()

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
    return save_figure(fig, path, tight=False)


def plot_loss_curves(results: dict[str, Any], path: Path) -> Path:
    """One panel per method: each task's answer NLL over the stream (untrained, then after each task)."""
    plt = pyplot()

    tasks, methods = results["tasks"], results["methods"]
    n = len(tasks)
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.2), squeeze=False, sharey=True)
    for ax, (name, m) in zip(axes[0], methods.items(), strict=True):
        grid = [results["base_L"], *m["L"]]
        for j, task in enumerate(tasks):
            ax.plot(range(n + 1), [row[j] for row in grid], marker="o", label=task)
            ax.axvline(j + 1, color="gray", alpha=0.15)
        ax.set_xticks(range(n + 1), ["base", *(str(i + 1) for i in range(n))])
        ax.set_xlabel("after task")
        ax.set_title(f"{name}  loss-BWT {m['loss_bwt']:+.2f}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("answer NLL (nats/token)")
    axes[0][-1].legend(fontsize=7)
    return save_figure(fig, path)


def _introduction(results: dict[str, Any], scoring: str) -> str:
    """What the report's numbers mean, and how R was scored when not by generation."""
    text = (
        f"Model `{results['model']}`, stream: {' -> '.join(results['tasks'])}. Scores are 0-100; "
        "OP is the mean of the last row of R, BWT the mean change on earlier tasks after the whole stream "
        "(negative = forgetting), FWT what earlier tasks did for a task before it was trained. "
        "L[i][j] is task j's mean answer-token NLL (nats per token, teacher-forced) after training through task i; "
        "loss-BWT is the mean rise of earlier tasks' L by the end (positive = forgetting). "
        f"One seed ({results.get('seed', 0)}): a difference between methods is not a finding until several seeds "
        "resolve it (`--seeds`)."
    )
    if scoring == "options":
        text += (
            " R is scored by option likelihood (eval.scoring 'options'): each test example's prediction is the "
            "answer, among its task's labels or distinct answers, that the model finds most likely, not its "
            "greedy generation."
        )
    return text


def write_report(run_dir: Path, results: dict[str, Any], scoring: str = "generate") -> Path:
    """report.md in the run folder, with R.png and L.png (task boundaries) and anytime.png (stream.eval_every);
    `scoring` says how R was scored (eval.scoring)."""
    with_r = {name: m for name, m in results["methods"].items() if "R" in m}
    sections = [f"# Continual-learning run `{run_dir.name}`", _introduction(results, scoring)]
    if with_r:
        plot_r_matrices({**results, "methods": with_r}, run_dir / "R.png")
        plot_loss_curves({**results, "methods": with_r}, run_dir / "L.png")
        sections += [
            "## Comparison (final scores)",
            comparison_table({**results, "methods": with_r}),
            "## What the numbers say",
            "\n".join(verdicts({**results, "methods": with_r})),
            "## R matrices",
            "![R matrices](R.png)",
            "## Loss over the stream",
            "![answer NLL of every task after every task](L.png)",
        ]
    if any("anytime" in m for m in results["methods"].values()):
        plot_anytime(results, run_dir / "anytime.png")
        sections += ["## Any time", EXPLAINED, anytime_table(results), "![scores over the stream](anytime.png)"]
    identified = identification_lines(results)
    if identified:
        sections += [
            "## Task identification",
            "A prefix method in 'infer' mode gives a test prompt the prefixes of the task whose prototype (the "
            "frozen model's mean pooled state over that task's training prompts) is nearest. A prompt given another "
            "task's prefixes is scored without its own, so these rates bound what the method can score.",
            "\n\n".join(identified),
        ]
    routers = [line for name, m in results["methods"].items() for line in router_lines(name, m.get("router"))]
    if routers:
        sections += ["## Routers", "\n\n".join(routers)]
    for name, m in results["methods"].items():
        seconds = f"training {m['train_seconds']:.0f} s, evaluation {m['eval_seconds']:.0f} s"
        about = f"method `{m.get('method', name)}`, size (rank or prefix length) matched by: "
        about += f"{m.get('match', 'activated')}; adapter: `{m['adapter']}`"
        sections.append(f"### {name}")
        if "R" in m:
            sections += [
                f"OP {m['op']:.1f}, BWT {m['bwt']:.1f}, FWT {m['fwt']:.1f}, loss-BWT {m['loss_bwt']:+.3f}; "
                f"{seconds}; {about}",
                r_matrix_table(m, results["tasks"], results["base"], results["base_se"], results.get("majority")),
                loss_matrix_table(m, results["tasks"], results["base_L"]),
            ]
        else:
            sections.append(f"Trained without task boundaries; {seconds}; {about}")
        if "anytime" in m:
            sections.append(steps_table(m, results["tasks"]))
    path = run_dir / "report.md"
    write_text(path, "\n\n".join(sections) + "\n")
    return path
