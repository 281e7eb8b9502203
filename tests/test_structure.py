"""The repository's shape: every committed link resolves."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
METHODS = ROOT / "src" / "mhmoe" / "cl" / "methods"


def _tracked_links() -> list[str]:
    """Paths git records as symbolic links (mode 120000)."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [line.split("\t", 1)[1] for line in listing.splitlines() if line.startswith("120000 ")]


def test_every_tracked_link_resolves():
    broken = [path for path in _tracked_links() if not (ROOT / path).exists()]
    assert not broken, f"committed symbolic links whose target does not exist: {broken}"


def test_readme_configs_folder_holds_the_presets():
    assert sorted(p.name for p in (ROOT / "configs").glob("*.yaml")) == sorted(
        p.name for p in (ROOT / "src" / "mhmoe" / "configs").glob("*.yaml")
    )
    assert (ROOT / "configs" / "quickstart.yaml").is_file()
