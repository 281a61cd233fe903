"""Imports run one way: the package's import graph, read with ``ast``, has no cycle.

What counts as an edge: every ``import`` / ``from ... import`` of a project module, wherever it stands: at module
level, inside a function (a lazy import is still a dependency, it only runs later) and under
``if TYPE_CHECKING:`` (an annotation couples the two modules for a reader and for mypy even though nothing runs).
``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``. Importing ``a.b`` also
runs ``a/__init__``; that implicit edge is not counted (our ``__init__`` files only gather their own modules).

Two levels are checked: modules (no exceptions), and rooms (the top-level module or subpackage a module lives in:
``audio``, ``story``, ``app``...), where a cycle would have to be listed in ``KNOWN_ROOM_CYCLES`` with its reason
(none is) so that the list can only shrink.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import audiostory_cli

PACKAGE = Path(audiostory_cli.__file__).parent

# Room cycles still allowed, each with its reason; none is left (the last, model <-> weights, went when conversion
# took our module builder as a parameter instead of importing the assembled model).
KNOWN_ROOM_CYCLES: set[frozenset[str]] = set()


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` under the package ``root``."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imported_modules(tree: ast.Module, module: str, is_package: bool, modules: set[str]) -> Iterator[str]:
    """Every project module an import in ``tree`` names, at any depth (functions, TYPE_CHECKING, try blocks)."""
    base = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")[: len(base.split(".")) - (node.level - 1)]
                source = ".".join(anchor + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                name = f"{source}.{alias.name}"
                if name in modules:
                    yield name
                elif source in modules:
                    yield source


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module → the project modules it imports (self-imports dropped)."""
    files = module_files(root)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found = _imported_modules(tree, module, path.name == "__init__.py", set(files))
        graph[module] = {name for name in found if name != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each as one cycle through them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(_cycle_through(sorted(component), graph))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _cycle_through(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One closed path inside a strongly connected ``component``, from its first member back to it."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                return paths[node] + [start]
            if nxt not in paths:
                paths[nxt] = paths[node] + [nxt]
                queue.append(nxt)
    return component


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def room_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}
    for module, targets in graph.items():
        edges = rooms.setdefault(room_of(module), set())
        edges.update(room_of(t) for t in targets if room_of(t) != room_of(module))
    return rooms


def _describe(found: list[list[str]]) -> str:
    return "; ".join(" -> ".join(cycle) for cycle in found)


def test_no_module_imports_itself_back() -> None:
    found = cycles(import_graph(PACKAGE))
    assert not found, f"import cycle(s): {_describe(found)}; move what both need into the lower module"


def test_rooms_import_one_way_apart_from_the_known_cycle() -> None:
    found = cycles(room_graph(import_graph(PACKAGE)))
    new = [c for c in found if frozenset(c) not in KNOWN_ROOM_CYCLES]
    assert not new, f"import cycle(s) between rooms: {_describe(new)}"
    gone = KNOWN_ROOM_CYCLES - {frozenset(c) for c in found}
    assert not gone, f"these room cycles are gone: {sorted(map(sorted, gone))}; remove them from KNOWN_ROOM_CYCLES"


def test_audio_takes_plain_data_not_the_story_plan() -> None:
    graph = import_graph(PACKAGE)
    allowed = {"audiostory_cli.story.timecode"}  # SMPTE arithmetic, no plan
    leaks = {
        module: sorted(t for t in targets if t.startswith("audiostory_cli.story") and t not in allowed)
        for module, targets in graph.items()
        if module.startswith("audiostory_cli.audio")
    }
    assert not {m: t for m, t in leaks.items() if t}


def test_the_graph_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import x\n    return x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nx = 1\nif TYPE_CHECKING:\n    from toy.a import b\n")
    (pkg / "d.py").write_text("from . import c\n")
    graph = import_graph(pkg)
    assert graph["toy.a"] == {"toy.sub.b"}
    assert graph["toy.sub.b"] == {"toy.c"}
    assert graph["toy.c"] == {"toy.a"}
    assert cycles(graph) == [["toy.a", "toy.sub.b", "toy.c", "toy.a"]]
    assert cycles(room_graph(graph)) == [["a", "sub", "c", "a"]]
