"""No import cycle among the project's modules (docs/design.md, "What may import what").

Every module of mdrbench/, builders/, leaderboard/ and baselines/ is read with `ast`; every
import statement counts, those inside functions too (a deferred import is still a
dependency: it only hides a ring until the function runs). Imports resolve to project
modules under the names they install as (pyproject's package-dir: builders/ is
mdrbench.builders, ...). A module's own package `__init__` is not an edge: Python runs it
before the module, whoever imports what."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# folder -> the package it installs as (pyproject.toml, [tool.setuptools.package-dir])
FOLDERS = {
    "mdrbench": "mdrbench",
    "builders": "mdrbench.builders",
    "leaderboard": "mdrbench.leaderboard",
    "baselines": "mdrbench.baselines",
}


def project_modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package's __init__) for every module of the project."""
    out: dict[str, tuple[Path, bool]] = {}
    for folder, package in FOLDERS.items():
        for f in sorted((ROOT / folder).rglob("*.py")):
            parts = list(f.relative_to(ROOT / folder).with_suffix("").parts)
            init = parts[-1] == "__init__"
            name = ".".join([package, *(parts[:-1] if init else parts)])
            out[name] = (f, init)
    return out


def imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every dotted name the module's import statements (at any depth) can bind: for
    `from a import b`, both `a.b` (b may be a module) and `a`."""
    out: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def resolve(name: str, modules: set[str]) -> str | None:
    """The project module a dotted name lives in (its longest prefix that is one)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        cand = ".".join(parts[:i])
        if cand in modules:
            return cand
    return None


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (its ancestors' __init__ left out)."""
    mods = project_modules()
    names = set(mods)
    graph: dict[str, set[str]] = {}
    for name, (path, init) in mods.items():
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        targets = {resolve(n, names) for n in imported_names(tree, name, init)}
        graph[name] = {
            t for t in targets if t is not None and t != name and not name.startswith(f"{t}.")
        }
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A ring of the directed graph as [a, b, ..., a], or None: depth-first search,
    iterative, nodes and edges in sorted order (the same ring every time)."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(graph, WHITE)
    for start in sorted(graph):
        if color[start] != WHITE:
            continue
        path = [start]
        color[start] = GREY
        stack = [iter(sorted(graph[start]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                color[path.pop()] = BLACK
                continue
            state = color.get(nxt, BLACK)  # an edge out of the graph ends nowhere
            if state == GREY:
                return path[path.index(nxt) :] + [nxt]
            if state == WHITE:
                color[nxt] = GREY
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_cycle_finder_finds_a_planted_ring():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    # a diamond is not a ring; a ring behind it is found
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None
    ring = find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": {"e"}, "e": {"c"}})
    assert ring == ["d", "e", "c", "d"]  # c -> d -> e -> c, entered at d


def test_imports_inside_functions_and_relative_imports_count():
    code = "def f():\n    from .b import x\n    import mdrbench.c\n"
    names = imported_names(ast.parse(code), "mdrbench.pkg.a", is_package=False)
    assert {"mdrbench.pkg.b", "mdrbench.pkg.b.x", "mdrbench.c"} <= names
    assert resolve("mdrbench.pkg.b.x", {"mdrbench.pkg.b", "mdrbench.pkg"}) == "mdrbench.pkg.b"


def test_the_walk_sees_the_project():
    graph = import_graph()
    # every folder's modules are there, and known edges (one deferred) are found
    assert {"mdrbench.trainer", "mdrbench.builders.build", "mdrbench.leaderboard.site",
            "mdrbench.baselines.paper", "mdrbench.frameworks.mamdr"} <= set(graph)  # fmt: skip
    assert "mdrbench.frameworks.base" in graph["mdrbench.frameworks.mamdr"]
    assert "mdrbench.runs" in graph["mdrbench.sweep"]  # imported inside a function


def test_nothing_below_the_cli_imports_it():
    graph = import_graph()
    up = {m: sorted(d for d in deps if d == "mdrbench.cli" or d.startswith("mdrbench.cli."))
          for m, deps in graph.items()
          if m not in ("mdrbench.cli", "mdrbench.__main__") and not m.startswith("mdrbench.cli.")}
    assert {m: d for m, d in up.items() if d} == {}


def test_no_import_cycle():
    ring = find_cycle(import_graph())
    assert ring is None, "import cycle: " + " -> ".join(ring)
