"""The repository's shape: every committed link resolves, and the method modules form no import cycle."""

import ast
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


def _empty(function: ast.FunctionDef) -> bool:
    """A body that does nothing: `pass`, `return None`, a bare docstring, or `...`."""
    body = [n for n in function.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    if not body:
        return True
    only = body[0] if len(body) == 1 else None
    return isinstance(only, ast.Pass) or (
        isinstance(only, ast.Return) and (only.value is None or getattr(only.value, "value", 0) is None)
    )


def test_every_method_subclasses_hooks_and_repeats_no_empty_hook():
    """The no-op defaults live once, in `Hooks`; a method overrides only the hooks it uses."""
    from mhmoe.cl.methods import METHODS as registry
    from mhmoe.cl.methods import Hooks

    assert all(issubclass(m.hooks, Hooks) for m in registry.values())
    hook_names = {n for n, v in vars(Hooks).items() if callable(v) and not n.startswith("__")}
    assert {"before_task", "penalty", "after_backward", "after_step", "after_task"} <= hook_names
    for path in METHODS.glob("*.py"):
        if path.name == "hooks.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "") == "Hooks" for b in node.bases):
                empty = [
                    f.name for f in node.body if isinstance(f, ast.FunctionDef) and f.name in hook_names and _empty(f)
                ]
                assert not empty, f"{path.name}: {node.name} repeats the no-op hooks {empty}"
