"""The seam between core and plugins, checked statically (every import, at module level or
inside a function): core never imports ``musicfw.plugins`` (the plugin manager's tuple of
default plugin modules is a string list, not an import), and core's modules import each other
without a circle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"


#: source folder -> the package it installs as (pyproject's package-dir)
ROOMS = {ROOT / "core": "musicfw.core", ROOT / "musicfw": "musicfw", ROOT / "plugins": "musicfw.plugins"}


def _module_name(path: Path, top: Path = CORE) -> str:
    rel = path.relative_to(top).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([*ROOMS[top].split("."), *parts])


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def core_imports(tops: tuple[Path, ...] = (CORE,)) -> dict[str, set[str]]:
    """module -> every musicfw module it imports (anywhere in the file)."""
    graph: dict[str, set[str]] = {}
    paths = [(top, path) for top in tops for path in sorted(top.rglob("*.py"))]
    names = {_module_name(path, top) for top, path in paths}
    for top, path in paths:
        name = _module_name(path, top)
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        tree = ast.parse(path.read_text(), str(path))
        # imports under `if TYPE_CHECKING:` never run: they cannot make a circle
        skipped = {
            id(n)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for stmt in block.body
            for n in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.ImportFrom):
                mod = _resolve(name, is_package, node)
                if mod.startswith("musicfw"):
                    # `from . import x` / `from .pkg import mod` may name submodules
                    for alias in node.names:
                        sub = f"{mod}.{alias.name}"
                        targets.add(sub if sub in names else mod)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("musicfw")}
        graph[name] = {t for t in targets if t != name}
    return graph


def test_core_imports_no_plugin():
    offenders = {
        mod: sorted(t for t in targets if t.startswith("musicfw.plugins"))
        for mod, targets in core_imports().items()
    }
    offenders = {m: t for m, t in offenders.items() if t}
    assert offenders == {}, f"core modules import plugins (add the method to a contract instead): {offenders}"


def test_core_is_the_kernel_it_imports_no_engine_music_library_or_cli():
    """The kernel holds the contracts; the rooms above it (music library, engine, command line)
    build on it, never the other way round."""
    above = ("musicfw.engine", "musicfw.music", "musicfw.cli", "musicfw.api")
    offenders = {mod: sorted(t for t in targets if t.startswith(above)) for mod, targets in core_imports().items()}
    offenders = {m: t for m, t in offenders.items() if t}
    assert offenders == {}, f"core modules import a room above the kernel: {offenders}"


def test_core_imports_no_public_api():
    """api.py (and musicfw/__init__) is the outermost layer: nothing in core imports it."""
    users = sorted(m for m, t in core_imports().items() if {"musicfw.api", "musicfw"} & t)
    assert users == [], f"core modules import the public API layer: {users}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_core_has_no_import_cycle():
    graph = core_imports()
    assert len(graph) > 10  # the walk found core's modules
    assert _cycles(graph) == []


def test_the_whole_tree_has_no_import_cycle():
    """core, the music library, the engine, the CLI and the plugins: data flows down."""
    graph = core_imports(tuple(ROOMS))
    assert len(graph) > 80  # the walk found every room's modules
    graph = {m: {t for t in targets if t in graph or t.rpartition(".")[0] in graph} for m, targets in graph.items()}
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_data_stage_does_not_climb_to_training():
    """Data flows down: the data module reads the ``train:`` section through the experiment
    config (``train_section``), it never imports the training stage that consumes it."""
    graph = core_imports(tuple(ROOMS))
    assert "musicfw.engine.config" in graph["musicfw.engine.data"]
    assert not {t for t in graph["musicfw.engine.data"] if t.startswith(("musicfw.engine.training", "musicfw.engine.lightning"))}
