"""The package's shape: layers import only downwards, and no two modules import each other in a circle.

Layers, top to bottom (README "Architecture"): the CLI and the UI, eval, finetune, rag, indexes, core.
`ragtune/__init__.py` is the public façade over all of them and nothing inside the package imports it.
Every import counts, at module level or inside a function, under TYPE_CHECKING or not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "ragtune.core": 0,
    "ragtune.indexes": 1,
    "ragtune.rag": 2,
    "ragtune.finetune": 3,
    "ragtune.eval": 4,
    "ragtune.ui": 5,
    "ragtune.cli": 6,
    "ragtune": 7,  # the façade: `from ragtune import RAG` is for users, not for ragtune's own modules
}


def package_dirs() -> dict[str, Path]:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: ROOT / folder for name, folder in setuptools["package-dir"].items()}


def modules() -> dict[str, Path]:
    """Every module of the installed package, by its dotted name."""
    found = {}
    for package, folder in package_dirs().items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((package, *parts))
            found.setdefault(name, path)
    return found


def imported(path: Path, name: str) -> set[str]:
    """Names of ragtune modules `path` (module `name`) imports anywhere in its body."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)  # `from pkg import module`
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            out.add(node.args[0].value)
    return {t for t in out if t == "ragtune" or t.startswith("ragtune.")}


def layer(module: str) -> tuple[str, int]:
    prefix = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return prefix, LAYERS[prefix]


ALL = modules()
GRAPH = {name: {t for t in imported(path, name) if t in ALL and t != name} for name, path in ALL.items()}


def test_every_folder_of_the_package_is_found():
    assert {"ragtune.core.errors", "ragtune.indexes.bm25", "ragtune.rag.api", "ragtune.cli.main"} <= set(ALL)


@pytest.mark.parametrize("module", sorted(m for m in ALL if m != "ragtune"))
def test_imports_run_down_the_layers(module: str):
    here, level = layer(module)
    upward = sorted(t for t in GRAPH[module] if layer(t)[1] > level)
    assert not upward, f"{module} ({here}) imports from a layer above it: {upward}"


def test_the_core_imports_nothing_of_ours_but_itself():
    for name, targets in GRAPH.items():
        if name.startswith("ragtune.core"):
            assert all(t.startswith("ragtune.core") for t in targets), (name, targets)


def test_no_modules_import_each_other_in_a_circle():
    # Tarjan's strongly connected components: any component of two or more modules is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert not circles, f"modules importing each other in a circle: {circles}"


def test_the_checker_sees_an_upward_import(tmp_path: Path):
    # The tests above pass on a clean tree; this one shows they would catch a violation.
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ragtune.rag.api import RAG\n")
    assert imported(bad, "ragtune.indexes.bad") == {"ragtune.rag.api", "ragtune.rag.api.RAG"}
    assert layer("ragtune.rag.api")[1] > layer("ragtune.indexes.bad")[1]
