"""The repository's shape: every committed link resolves, and the method modules form no import cycle."""

import ast
import re
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


def _heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for a markdown text's headings (lower-cased, punctuation dropped, spaces as hyphens)."""
    headings = re.findall(r"^#+ (.*)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_readme_and_docs_links_resolve():
    """Every relative link and image in README.md and docs/*.md names a file that exists, and an anchor it has."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path) if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and anchor not in _heading_anchors(
                re.sub(r"```.*?```", "", dest.read_text(encoding="utf-8"), flags=re.S)
            ):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, f"links that do not resolve: {broken}"


def _imported_modules(path: Path) -> set[str]:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    return imported


def test_method_modules_import_the_leaf_contract_not_the_registry():
    """The registry (`mhmoe.cl.methods`) imports the method modules; none of them imports it back."""
    modules = [p for p in METHODS.glob("*.py") if p.name != "__init__.py"]
    assert modules
    for path in modules:
        imported = _imported_modules(path)
        assert "mhmoe.cl.methods" not in imported, f"{path.name} imports the registry package"
        assert "typing.TYPE_CHECKING" not in imported and "TYPE_CHECKING" not in path.read_text(), path.name
    leaf = _imported_modules(METHODS / "hooks.py")
    assert not [m for m in leaf if m.startswith("mhmoe.cl")], "hooks.py must stay a leaf module"


def test_public_method_names_still_come_from_the_package():
    from mhmoe.cl.methods import METHODS as registry
    from mhmoe.cl.methods import HookContext, Hooks, Method, NoHooks
    from mhmoe.cl.methods.hooks import Method as LeafMethod

    assert Method is LeafMethod and all(isinstance(m, Method) for m in registry.values())
    assert registry["lora"].hooks is NoHooks and HookContext and Hooks
