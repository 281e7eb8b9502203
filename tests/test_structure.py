"""The repository's shape: every committed link resolves, the modules import only downwards through the layers,
the settings load without torch, and the method modules form no import cycle."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "mhmoe"
METHODS = PACKAGE / "cl" / "methods"


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


# The package's layers, lowest first: a module may import its own layer and those below, never one above. A name
# covers the module and everything under it; the longest name that covers a module decides its layer.
LAYERS = [
    # Plain Python: errors, file writing, tables, field checks and the run settings (no torch, no registry).
    ["errors", "files", "markdown", "checks", "claims_spec", "distributed", "figures", "variants", "settings"],
    ["metrics"],
    ["data"],  # data.trace scores answers with metrics.text
    ["adapters"],
    ["inject", "observe", "accounting", "models"],
    ["cl.loss", "cl.eval_mode"],  # the parts of the loop that the methods reuse
    ["cl.methods"],
    ["cl.entries", "config"],  # the checks that need the registries, and load_config that runs them
    ["cl"],
    ["analysis"],
    ["cli"],
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int | None:
    """The index in LAYERS of a module named relative to mhmoe ('' is the package itself)."""
    best = None
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best[1])):
                best = (index, name)
    return best[0] if best else None


def _mhmoe_imports(path: Path) -> set[str]:
    """The mhmoe modules a file imports, anywhere in it (a lazy import inside a function counts too)."""
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mhmoe"):
            base = node.module.removeprefix("mhmoe").lstrip(".")
            for alias in node.names:  # `from mhmoe.analysis import seeds` imports the module analysis.seeds
                sub = f"{base}.{alias.name}".lstrip(".")
                imported.add(sub if sub in modules else base)
        elif isinstance(node, ast.Import):
            imported.update(a.name.removeprefix("mhmoe").lstrip(".") for a in node.names if a.name.startswith("mhmoe"))
    return imported


def test_every_module_has_a_layer():
    """A new module must be placed in LAYERS, so the layering check below sees it (the package facade imports
    nothing statically: its names are imported on first use)."""
    unplaced = [_module_name(p) for p in PACKAGE.rglob("*.py") if _module_name(p) and _layer(_module_name(p)) is None]
    assert not unplaced, f"modules in no layer of LAYERS: {unplaced}"


def test_no_module_imports_from_a_higher_layer():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        if not module:
            continue
        for imported in _mhmoe_imports(path):
            if imported and _layer(imported) > _layer(module):
                upward.append(f"{module} (layer {_layer(module)}) imports {imported} (layer {_layer(imported)})")
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_settings_import_neither_torch_nor_a_registry():
    """Reading settings (for --help, a config check, a report) must not pay for torch, quadprog or the registries."""
    heavy = ["torch", "quadprog", "transformers", "mhmoe.cl", "mhmoe.adapters", "mhmoe.models"]
    code = f"import sys, mhmoe.settings; print([m for m in {heavy!r} if m in sys.modules])"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert loaded.stdout.strip() == "[]", f"import mhmoe.settings loads {loaded.stdout.strip()}"


def test_the_settings_name_the_registrys_adapter_kinds():
    from mhmoe.adapters import KINDS
    from mhmoe.settings import ADAPTER_KINDS, RunConfig

    assert tuple(KINDS) == ADAPTER_KINDS and list(RunConfig().adapters) == list(KINDS)


def test_the_package_names_load_on_first_use():
    import mhmoe
    from mhmoe import attach
    from mhmoe.inject import attach as owner

    assert attach is owner is mhmoe.attach and set(mhmoe.__all__) <= set(dir(mhmoe))
    assert all(getattr(mhmoe, name) is not None for name in mhmoe.__all__)


def test_no_function_of_the_run_machinery_is_over_60_lines():
    """cl/ holds the run machinery: a function longer than a screen does more than one thing."""
    long = []
    for path in (ROOT / "src" / "mhmoe" / "cl").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            size = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and size > 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({size} lines)")
    assert not long, long
