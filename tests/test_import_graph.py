"""No import cycle among the project's packages, counting imports inside functions.

An import moved into a function to dodge a cycle still makes the two modules depend on each
other: each can only be understood, tested and changed with the other. So the graph here
holds every import statement of every module (top level, in functions and in classes), except
those under ``if TYPE_CHECKING:``, which never run. It is read from the source with ``ast``,
so nothing is imported and no optional dependency is needed.

An edge goes to the module an import names: ``from a.b import c`` depends on ``a.b.c`` when
that is a module, else on ``a.b`` (``c`` is a name defined there). Importing ``a.b.c`` also
runs ``a/__init__.py`` and ``a/b/__init__.py``, so those count too, except the packages the
importing module itself lives in: Python has started them before the module runs, so a
submodule importing its sibling does not run its own package's ``__init__`` again.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("asc", "edge", "server", "training", "proto")

# Cycles known and owned by work in progress elsewhere, each as the set of its modules; to be
# emptied, not extended. A listed cycle that no longer exists fails the test too, so the list
# cannot go stale.
ALLOWED_CYCLES: list[frozenset[str]] = []


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            modules[module_name(path)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: ``if TYPE_CHECKING:`` bodies are skipped (their
    ``else:`` branch is not)."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))
    return found


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``module`` imports, wherever in its source the import sits."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        source = _absolute(node, module, is_package)
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            targets.add(submodule if submodule in modules else source)
    # The packages a target's import runs first; the importer's own have already started.
    own = set(_packages_of(module)) | ({module} if is_package else set())
    targets |= {p for t in list(targets) for p in _packages_of(t) if p not in own}
    return {t for t in targets if t in modules and t != module}


def _packages_of(module: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``."""
    parts = module.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (the graph is deep enough to worry the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return [c for c in components if len(c) > 1]


def one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module, to name in the failure."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:
                    return [*paths[node], start]
                if child not in paths:
                    paths[child] = [*paths[node], child]
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def test_the_graph_sees_imports_inside_functions_only():
    tree = ast.parse("def f():\n    from pkg import b\nif TYPE_CHECKING:\n    import pkg.c\n")
    assert [ast.unparse(n) for n in _import_nodes(tree)] == ["from pkg import b"]
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert strongly_connected(graph) == [{"a", "b"}]
    assert one_cycle(graph, {"a", "b"}) == ["a", "b", "a"]


def test_an_import_runs_the_packages_above_its_target_except_the_importers_own(tmp_path):
    files = {
        "p/__init__.py": "from p.a import x\n",
        "p/a.py": "import p.b\n",
        "p/b.py": "",
        "q.py": "def f():\n    from p.b import y\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    modules = {"p": tmp_path / "p/__init__.py", "p.a": tmp_path / "p/a.py"}
    modules |= {"p.b": tmp_path / "p/b.py", "q": tmp_path / "q.py"}
    assert imports_of("p", modules["p"], modules) == {"p.a"}
    assert imports_of("p.a", modules["p.a"], modules) == {"p.b"}
    assert imports_of("q", modules["q"], modules) == {"p", "p.b"}


def test_no_import_cycle_among_the_project_packages():
    graph = import_graph()
    assert "asc.codecs.stream" in graph, "the project's modules were not found"
    cycles = [frozenset(c) for c in strongly_connected(graph)]
    new = [c for c in cycles if c not in ALLOWED_CYCLES]
    gone = [c for c in ALLOWED_CYCLES if c not in cycles]
    report = "\n".join(" -> ".join(one_cycle(graph, set(c))) for c in new)
    assert not new, f"import cycles (imports inside functions count too):\n{report}"
    assert not gone, f"allowed cycles that no longer exist; drop them: {gone}"
