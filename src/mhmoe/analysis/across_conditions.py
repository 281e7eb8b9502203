"""The analysis of a run repeated over conditions (task orders, or stream modes with and without task
boundaries): every condition's folder is analysed as a run of its own, and its headline figures
(analysis/across_seeds.py) are set side by side. Conditions are fixed, not samples: no figure is pooled across them."""

from __future__ import annotations

from typing import Any

from mhmoe.analysis.across_seeds import headline, summarise
from mhmoe.analysis.summary import skipped_lines
from mhmoe.markdown import markdown_table


def entry(analysis: dict[str, Any]) -> dict[str, Any]:
    """One condition's seeds, headline figures (mean and 95% t interval over its seeds; one seed: its value
    alone) and skipped parts, from the analysis.json of its folder (a single-seed or a multi-seed run)."""
    if "figures" in analysis:  # a multi-seed run, already summarised over its seeds
        return {key: analysis[key] for key in ("seeds", "figures", "skipped")}
    seed = analysis["seed"]
    return {"seeds": [seed], "figures": summarise({seed: headline(analysis)}), "skipped": analysis["skipped"]}


def _cell(figure: dict[str, Any] | None) -> str:
    if figure is None:
        return "-"
    if figure["low"] is None:
        return f"{figure['mean']:.3f}"
    return f"{figure['mean']:.3f} [{figure['low']:.3f}, {figure['high']:.3f}]"


def report_section(kind: str, conditions: dict[str, dict[str, Any]]) -> str:
    """The top report's '## Analysis' section: one row per headline figure, one column per condition."""
    names = list(conditions)
    figures = list(dict.fromkeys(name for c in conditions.values() for name in c["figures"]))
    rows = [[figure, *(_cell(c["figures"].get(figure)) for c in conditions.values())] for figure in figures]
    links = ", ".join(f"[{name}]({name}/report.md)" for name in names)
    lines = [
        "## Analysis",
        "",
        f"Each {kind}'s folder is analysed as a run of its own ({links}); each cell is the mean over that {kind}'s "
        f"seeds with its 95% t interval (one seed: its value). The {kind}s are fixed, not samples: no figure is "
        f"pooled across them. '-': not defined in that {kind}.",
        "",
        *(line for name, c in conditions.items() for line in skipped_lines(c["skipped"], where=f"{name}, ")),
        "",
        markdown_table(["figure", *names], rows),
    ]
    return "\n".join(lines) + "\n"
