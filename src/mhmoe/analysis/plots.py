"""The analysis pictures, one function each; every function writes one PNG and returns its path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mhmoe.figures import pyplot, save_figure

plt = pyplot()


def _save(fig: Figure, path: Path) -> Path:
    return save_figure(fig, path, dpi=110)


def probe_accuracy(layers: list[int], probes: dict[str, dict], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, (feature, rows) in enumerate(probes.items()):
        color = f"C{i}"
        ax.plot(layers, rows["accuracy"], "o-", color=color, label=feature)
        ax.plot(layers, rows["chance"], ":", color=color, alpha=0.7)
    ax.set(
        xlabel="layer",
        ylabel="probe accuracy",
        ylim=(0, 1.02),
        title="Linear probes on router inputs (dotted: chance)",
    )
    ax.legend(fontsize=8)
    return _save(fig, path)


def subspace_overlap(features: list[str], overlap: np.ndarray, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    image = ax.imshow(overlap, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(features)), features, rotation=30)
    ax.set_yticks(range(len(features)), features)
    for i in range(len(features)):
        for j in range(len(features)):
            ax.text(j, i, f"{overlap[i, j]:.2f}", ha="center", va="center", color="w" if overlap[i, j] < 0.6 else "k")
    ax.set_title("Probe subspace overlap (mean over layers)", fontsize=9)
    fig.colorbar(image, ax=ax)
    return _save(fig, path)


def head_shares(layers: list[int], shares: dict[str, np.ndarray], path: Path) -> Path:
    fig, axes = plt.subplots(1, len(shares), figsize=(3.2 * len(shares), 3.4), squeeze=False, layout="constrained")
    for ax, (feature, grid) in zip(axes[0], shares.items(), strict=True):
        image = ax.imshow(np.asarray(grid).T, vmin=0, vmax=1, cmap="magma", aspect="auto")
        ax.set(title=feature, xlabel="layer", ylabel="head")
        ax.set_xticks(range(len(layers)), layers)
    fig.colorbar(image, ax=axes[0].tolist())
    fig.suptitle("Head-ablation shares of each probe's accuracy", fontsize=9)
    return save_figure(fig, path, dpi=110, tight=False)


def gradient_cosines(coherence: np.ndarray, cross: np.ndarray, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    bins = np.linspace(-1, 1, 41)
    ax.hist(cross, bins=bins, alpha=0.6, density=True, label=f"across compositions (n={len(cross)})")
    ax.hist(coherence, bins=bins, alpha=0.6, density=True, label=f"within (halves, n={len(coherence)})")
    ax.set(xlabel="cosine of mean per-token gradients", ylabel="density")
    ax.legend(fontsize=8)
    return _save(fig, path)


def n_eff_by_layer(layers: list[int], methods: dict[str, dict], path: Path) -> Path:
    """Per method and layer, the pair N_eff's excess over its permutation null, with +-2 null sd bars."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, (method, rows) in enumerate(methods.items()):
        for kind, style in (("path", "o-"), ("per_head", "s--")):
            if rows.get(kind) is None:
                continue
            excess, sd = (np.array([np.nan if v is None else v for v in rows[kind][k]]) for k in ("excess", "sd"))
            label = f"{method} ({'route = all heads' if kind == 'path' else 'per head'})"
            ax.errorbar(
                layers, excess, yerr=2 * sd, fmt=style, color=f"C{i}", alpha=1 if kind == "path" else 0.7, label=label
            )
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="layer", ylabel="pair N_eff - null mean")
    ax.set_title("Compositions per route beyond chance (below 0: fewer than chance)", fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)


def forgetting_attribution(tasks: list[str], methods: dict[str, list[list[float | None]]], path: Path) -> Path:
    """Per method, the lower triangle A[j][i]: change of task i's loss caused by training task j."""
    fig, axes = plt.subplots(1, len(methods), figsize=(3.8 * len(methods), 3.6), squeeze=False, layout="constrained")
    grids = {m: np.array([[np.nan if v is None else v for v in row] for row in a]) for m, a in methods.items()}
    limit = max([np.nanmax(np.abs(g)) for g in grids.values() if np.isfinite(g).any()] or [1.0])
    for ax, (method, grid) in zip(axes[0], grids.items(), strict=True):
        image = ax.imshow(grid, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(tasks)), tasks, fontsize=7)
        ax.set(title=method, xlabel="task i (whose loss)", ylabel="task j (trained)")
        for (j, i), value in np.ndenumerate(grid):
            if np.isfinite(value):
                ax.text(i, j, f"{value:+.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(image, ax=axes[0].tolist(), label="A[j][i] (loss change)")
    return save_figure(fig, path, dpi=110, tight=False)


def forgetting_vs_n_eff(methods: dict[str, dict], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, (method, rows) in enumerate(methods.items()):
        ax.errorbar(rows["bin_n_eff"], rows["bin_mean"], yerr=rows["bin_se"], fmt="o-", color=f"C{i}", label=method)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="N_eff (equal-mass bins of routes)", ylabel="Delta L_old (after - before)")
    ax.set_title("Route-wise forgetting", fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)
