"""The import layering the project promises, checked on the source with `ast` (every import, at any
depth, inside functions too):

    vilasr.cli (the command line) -> stages -> vilasr -> drawing_ops
    synth -> drawing_ops;  tpu at the bottom (vilasr and stages may use it)

and no import loop between files or between packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("drawing_ops", "synth", "vilasr", "stages", "tpu")
CLI = "vilasr.cli"
CLI_ENTRY_POINTS = {"vilasr.__main__"}  # `python -m vilasr` is the command line too

# layer -> the layers it may import (besides itself)
ALLOWED = {
    "drawing_ops": set(),
    "tpu": set(),
    "synth": {"drawing_ops"},
    "vilasr": {"drawing_ops", "tpu"},
    "stages": {"vilasr", "synth", "tpu", "drawing_ops"},
    CLI: {"vilasr", "stages", "synth", "tpu", "drawing_ops"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def layer_of(module: str) -> str | None:
    if module == CLI or module.startswith(CLI + ".") or module in CLI_ENTRY_POINTS:
        return CLI
    top = module.split(".")[0]
    return top if top in PACKAGES else None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `module` imports: `from a.b import c` names `a.b.c` when that is a module."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(name for name in names if layer_of(name) is not None)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_every_package_imports_only_what_its_layer_allows(graph):
    bad = [f"{src} imports {dst}" for src, targets in graph.items() for dst in targets
           if layer_of(dst) != layer_of(src) and layer_of(dst) not in ALLOWED[layer_of(src)]]
    assert not bad, "\n".join(bad)


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_loop_between_files(graph):
    loop = _cycle({src: {dst for dst in targets if dst != src} for src, targets in graph.items()})
    assert loop is None, " -> ".join(loop)


def test_no_import_loop_between_packages(graph):
    edges: dict[str, set[str]] = {}
    for src, targets in graph.items():
        edges.setdefault(layer_of(src), set()).update(layer_of(d) for d in targets if layer_of(d) != layer_of(src))
    loop = _cycle(edges)
    assert loop is None, " -> ".join(loop)


def test_the_checker_sees_imports_inside_functions_and_relative_ones(tmp_path):
    """The walker itself: a nested and a relative import are both found."""
    pkg = tmp_path / "synth"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "x.py").write_text("def f():\n    from vilasr.model import hf\n    from . import y\n")
    (pkg / "y.py").write_text("")
    modules = {"synth": pkg / "__init__.py", "synth.x": pkg / "x.py", "synth.y": pkg / "y.py",
               "vilasr.model": ROOT / "vilasr/model/__init__.py", "vilasr.model.hf": ROOT / "vilasr/model/hf.py"}
    assert imports_of("synth.x", pkg / "x.py", modules) == {"vilasr.model.hf", "synth.y"}
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
