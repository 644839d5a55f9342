"""The shape of the package: imports go one way, and the core never reaches for an adapter.

DESIGN §6: no core module (model, workflow, dispatcher, rules, mail, ports) imports
``adapters/``, and the import graph of ``src/`` has no cycle. The graph is read from the source
with :mod:`ast`, so a test run sees every import, executed or not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import retouraanvraag

PACKAGE = Path(retouraanvraag.__file__).parent
CORE = ("model", "workflow", "dispatcher", "rules", "mail", "ports", "errors", "photos", "shop")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (never run)."""
    found: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        found.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
            else:
                stack.append(child)
    return found


def _imports(path: Path, *, top_level_only: bool, runtime_only: bool = False) -> set[str]:
    """The package's modules that ``path`` imports (at the top level only, if asked)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if top_level_only:
        nodes: list[ast.AST] = list(tree.body)
    elif runtime_only:
        nodes = _runtime_nodes(tree)
    else:
        nodes = list(ast.walk(tree))
    found: set[str] = set()
    package = _module_name(path)
    base = package if path.name == "__init__.py" else package.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                target = f"{anchor}.{node.module}" if node.module else anchor
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    modules = _modules()
    return {name for name in found if name in modules}


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def test_no_core_module_imports_an_adapter() -> None:
    offenders = {
        name: sorted(i for i in _imports(path, top_level_only=False) if ".adapters" in i)
        for name, path in _modules().items()
        if name.split(".")[1:2] and name.split(".")[1] in CORE
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk of ``graph`` runs into."""
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_import_graph_has_no_cycle() -> None:
    graph = {
        name: _imports(path, top_level_only=True) - {name} for name, path in _modules().items()
    }
    # A package imports its own submodules to re-export them; that is not a cycle back.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not t.startswith(f"{name}.")}
    assert _cycles(graph) == []


def test_no_cycle_hides_in_an_import_inside_a_function() -> None:
    # An import moved into a function still ties the two modules together: each needs the
    # other, and which is first initialised decides whether the program starts. Only
    # imports for type checking (never run) are left out. The command line's imports are
    # deferred for start-up time, not to hide a cycle: nothing imports ``cli``.
    graph = {
        name: _imports(path, top_level_only=False, runtime_only=True) - {name}
        for name, path in _modules().items()
    }
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not t.startswith(f"{name}.")}
    assert _cycles(graph) == []
