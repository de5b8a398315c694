"""The package layout's rules, read from the source's imports (docs/architecture.md).

Floors, lowest first; a module may import its own floor and the floors below, never above:

0. ``benchmark.core``: errors, paths, atomic writes, locks, specs, the store, the registry,
   profiles, the Method contract
1. ``benchmark.data``, ``benchmark.features``, ``benchmark.metrics``
2. ``benchmark.pipeline``: one run from spec to stored rows, finished runs
3. ``benchmark.analyses`` and the plugin packages ``baselines``, ``methods``, ``reports``
4. ``benchmark.cli``: every ``bench`` command

No import circle among modules (function-level imports included), and none among the
subpackages either. A project import inside a function needs a comment saying why (on its
line, on the line above, or above the block of imports it opens): registry loading, an
optional heavy extra, or keeping ``bench --help`` free of torch.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "baselines", "methods", "reports")
FLOORS = {
    "benchmark": 0,  # the package's __init__: only __version__
    "benchmark.core": 0,
    "benchmark.data": 1,
    "benchmark.features": 1,
    "benchmark.metrics": 1,
    "benchmark.pipeline": 2,
    "benchmark.analyses": 3,
    "baselines": 3,
    "methods": 3,
    "reports": 3,
    "benchmark.cli": 4,
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (the deepest module named, not an attribute)
    line: int
    in_function: bool
    type_only: bool  # under `if TYPE_CHECKING:`
    commented: bool  # a comment on its line, the line above, or above the import block it is in


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


MODULES = project_modules()


def _has_comment(lines: list[str], first: int, last: int) -> bool:
    """A ``#`` comment on lines first..last (1-based), or on the line above the import block."""
    if any("#" in lines[i - 1] for i in range(first, last + 1)):
        return True
    above = first - 1
    while above >= 1:  # climb over the imports directly above: one comment can open a block
        text = lines[above - 1].strip()
        if text.startswith("#"):
            return True
        if not text.startswith(("from ", "import ")) or "#" in text:
            return "#" in text
        above -= 1
    return False


def _target(module: str, name: str | None) -> str:
    """``from benchmark.core import registry`` names the module benchmark.core.registry."""
    if name is not None and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    return module


def imports_of(module: str, path: Path) -> list[Import]:
    text = path.read_text()
    lines = text.splitlines()
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, True, type_only)
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                visit(child, in_function, True)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                if isinstance(child, ast.Import):
                    targets = [a.name for a in child.names]
                elif child.level == 0 and child.module:
                    targets = [_target(child.module, a.name) for a in child.names]
                else:
                    raise AssertionError(f"{path}:{child.lineno}: relative import; use absolute imports")
                commented = _has_comment(lines, child.lineno, child.end_lineno or child.lineno)
                for target in dict.fromkeys(targets):
                    if target.split(".")[0] in PACKAGES:
                        found.append(Import(module, target, child.lineno, in_function, type_only, commented))
            else:
                visit(child, in_function, type_only)

    visit(ast.parse(text, filename=str(path)), False, False)
    return found


IMPORTS = [imp for module, path in MODULES.items() for imp in imports_of(module, path)]


def package_of(module: str) -> str:
    """The floor's package a module belongs to: the longest prefix in FLOORS."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in FLOORS:
            return ".".join(parts[:n])
    raise AssertionError(f"{module} belongs to no floor: add its package to FLOORS in {__file__}")


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node, or a node importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return found


def _edges(imports: list[Import], by_package: bool = False) -> dict[str, set[str]]:
    """Who imports whom (type-only imports left out); by package, imports inside one package are left out."""
    edges: dict[str, set[str]] = {}
    for imp in imports:
        if imp.type_only or imp.target not in MODULES:
            continue
        a, b = (package_of(imp.source), package_of(imp.target)) if by_package else (imp.source, imp.target)
        if a != b:
            edges.setdefault(a, set()).add(b)
    return edges


def test_every_module_belongs_to_a_floor():
    for module in MODULES:
        package_of(module)


def test_no_import_circle_among_modules():
    """Function-level imports count: a circle hidden inside a function is still a circle."""
    assert _cycles(_edges(IMPORTS)) == []


def test_no_import_circle_among_subpackages():
    assert _cycles(_edges(IMPORTS, by_package=True)) == []


def test_no_upward_import():
    upward = [f"{MODULES[i.source].relative_to(ROOT)}:{i.line} {i.source} (floor {FLOORS[package_of(i.source)]}) "
              f"imports {i.target} (floor {FLOORS[package_of(i.target)]})"
              for i in IMPORTS if FLOORS[package_of(i.target)] > FLOORS[package_of(i.source)]]
    assert upward == []


def test_project_imports_inside_functions_say_why():
    silent = [f"{MODULES[i.source].relative_to(ROOT)}:{i.line} imports {i.target} inside a function"
              for i in IMPORTS if i.in_function and not i.commented]
    assert silent == [], "move these imports to the module top, or say on the line (or above it) why they must wait"


def test_the_checks_see_a_circle_an_upward_import_and_a_silent_function_import(tmp_path):
    """The reader itself: a made-up package with each fault is caught."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    source = tmp_path / "m.py"
    source.write_text("from benchmark.core import paths\n\n\ndef f():\n    from benchmark.pipeline import runner\n"
                      "\n\ndef g():\n    # registry loading: the plugin is named at run time\n"
                      "    from benchmark.cli import app\n    from benchmark.core import registry\n")
    found = imports_of("benchmark.core.fake", source)
    assert [(i.target, i.in_function, i.commented) for i in found] == [
        ("benchmark.core.paths", False, False), ("benchmark.pipeline.runner", True, False),
        ("benchmark.cli", True, True), ("benchmark.core.registry", True, True)]
    assert [i.target for i in found if FLOORS[package_of(i.target)] > FLOORS[package_of(i.source)]] == [
        "benchmark.pipeline.runner", "benchmark.cli"]


@pytest.mark.xfail(strict=True, reason="issue 17 section 2 is not done yet: methods, metrics, executors and command "
                                       "groups are still registered by name in core/registry.py instead of through "
                                       "entry points or self-registration")
def test_core_registry_names_no_plugin_module():
    text = (ROOT / "benchmark" / "core" / "registry.py").read_text()
    named = [p for p in ("baselines.", "methods.", "reports.") if f'"{p}' in text or f"'{p}" in text]
    assert named == []


def test_adding_guide_names_only_paths_and_modules_that_exist():
    """Every file, folder or module docs/adding.md names in backticks exists (placeholders like <name> aside)."""
    import importlib
    import re

    doc = "docs/adding.md"
    missing = []
    for token in re.findall(r"`([^`\s]+)`", (ROOT / doc).read_text()):
        if any(c in token for c in "<>$(\"'") or token.startswith("../"):
            continue
        if "/" in token:
            if not (ROOT / token).exists():
                missing.append(token)
        elif token.split(".")[0] in PACKAGES and "." in token:
            module, _, attr = token.partition(":")
            parts = module.split(".")
            for n in range(len(parts), 0, -1):  # the longest importable prefix, the rest attributes
                if ".".join(parts[:n]) in MODULES:
                    obj = importlib.import_module(".".join(parts[:n]))
                    try:
                        for name in [*parts[n:], *([attr] if attr else [])]:
                            obj = getattr(obj, name)
                    except AttributeError:
                        missing.append(token)
                    break
            else:
                missing.append(token)
    assert missing == [], f"{doc} names what does not exist"
