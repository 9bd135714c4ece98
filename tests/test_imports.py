"""The package's import graph has no circles.

Every ``import`` in ``taskmill/**/*.py`` is an arrow from its module to the
module it names, wherever it stands: at the top, inside a function, or under
``if TYPE_CHECKING:`` (a circle of types is a circle of design all the same).
``from pkg import name`` points at ``pkg.name`` when that is a module of the
package, else at ``pkg``.  A package's ``__init__`` is the module ``pkg``; the
implicit import of parent packages draws no arrow.  Imports by string
(``importlib.import_module``) are not seen.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "taskmill"

Graph = dict[str, set[str]]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _target(name: str, modules: set[str]) -> str | None:
    """The longest prefix of dotted ``name`` that is a module of the package."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _imported(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _target(alias.name, modules)
                if target is not None:
                    out.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # relative: from the module's own package, one level up per extra dot
                base_parts = module.split(".") if is_package else module.split(".")[:-1]
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                target = _target(f"{base}.{alias.name}", modules) if alias.name != "*" else None
                if target != f"{base}.{alias.name}":  # a name defined in ``base``, not a submodule
                    target = _target(base, modules)
                if target is not None:
                    out.add(target)
    out.discard(module)
    return out


def import_graph(package: Path = PACKAGE) -> Graph:
    """``{module: {modules it imports}}`` for every module of the package."""
    files = {module_name(p, package.parent): p for p in sorted(package.rglob("*.py"))}
    modules = set(files)
    return {
        name: _imported(ast.parse(path.read_text(encoding="utf-8"), str(path)), name,
                        path.name == "__init__.py", modules)
        for name, path in files.items()
    }


def circles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    for root in sorted(graph):
        if root in index:
            continue
        # iterative depth-first search: (node, iterator over its successors)
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work: list[tuple[str, Iterable[str]]] = [(root, iter(sorted(graph[root])))]
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in graph:
                    continue
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def describe(graph: Graph, found: list[list[str]]) -> str:
    lines = []
    for i, component in enumerate(found, 1):
        members = set(component)
        lines.append(f"circle {i}: {', '.join(component)}")
        for module in component:
            for target in sorted(graph[module] & members):
                lines.append(f"    {module} -> {target}")
    return "\n".join(lines)


def _under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


# --------------------------------------------------------------------------- #
def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The walker itself, on a made-up package: top-level, function-level,
    TYPE_CHECKING, relative and ``from pkg import submodule`` imports are all
    arrows; names imported from a module point at that module."""
    sources = {
        "pkg/__init__.py": "from pkg.a import A\n",
        "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub.b import B\nA = 1\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/b.py": "def f():\n    import pkg.sub.c\nB = 2\n",
        "pkg/sub/c.py": "from . import d\nfrom .. import a\n",
        "pkg/sub/d.py": "from pkg import sub\nimport os\n",
    }
    for name, text in sources.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path / "pkg")
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.sub.b"},
        "pkg.sub": set(),
        "pkg.sub.b": {"pkg.sub.c"},
        "pkg.sub.c": {"pkg.sub.d", "pkg.a"},
        "pkg.sub.d": {"pkg.sub"},
    }
    assert circles(graph) == [["pkg.a", "pkg.sub.b", "pkg.sub.c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_client_and_comm_are_free_of_circles() -> None:
    graph = import_graph()
    found = [c for c in circles(graph) if any(_under(m, "taskmill.client", "taskmill.comm") for m in c)]
    assert not found, "import circles through taskmill.client / taskmill.comm:\n" + describe(graph, found)


def test_the_whole_package_is_free_of_circles() -> None:
    graph = import_graph()
    found = circles(graph)
    assert not found, "import circles:\n" + describe(graph, found)


def test_the_server_does_not_import_the_client() -> None:
    graph = import_graph()
    wrong = sorted(f"{m} -> {t}" for m, targets in graph.items() if _under(m, "taskmill.server")
                   for t in targets if _under(t, "taskmill.client"))
    assert not wrong, "taskmill.server imports taskmill.client:\n" + "\n".join(wrong)


def test_no_module_is_over_800_lines() -> None:
    """Small modules with one purpose: split a module before it passes 800 lines."""
    package = Path(__file__).resolve().parents[1] / "taskmill"
    long = {str(p.relative_to(package.parent)): n for p in package.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 800}
    assert not long, f"modules over 800 lines: {long}"
