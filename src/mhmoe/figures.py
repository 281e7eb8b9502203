"""Report pictures: matplotlib without a display, and one way to write a figure (whole or not at all)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mhmoe.files import atomic_write


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (imported late: only reports need it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, *, dpi: int = 120, tight: bool = True) -> Path:
    """Lay out (unless `tight` is False, e.g. beside a shared colorbar), write atomically as PNG, close."""
    if tight:
        fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=dpi, format="png", bbox_inches="tight"))
    pyplot().close(fig)
    return Path(path)
