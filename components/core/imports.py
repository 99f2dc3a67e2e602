"""The project's import graph, read from source with `ast` (nothing is imported).

Used by the architecture test (no cycles, no upward imports) and by model registration, which ships only the
modules the MLflow model's code needs.
"""

from __future__ import annotations

import ast
from pathlib import Path


def module_name(path: Path, root: Path) -> str:
    """components/core/atomic.py -> components.core.atomic; a package's __init__.py -> the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_file(module: str, root: Path) -> Path:
    """components.core.atomic -> root/components/core/atomic.py; a package -> its __init__.py."""
    rel = root.joinpath(*module.split("."))
    return rel / "__init__.py" if rel.is_dir() else rel.with_suffix(".py")


def _in_type_checking(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(path: Path, root: Path, prefixes: tuple[str, ...], type_only: bool = False) -> list[tuple[str, int]]:
    """(imported module, line) for every import of a module under `prefixes` in the file, including imports
    inside functions; `if TYPE_CHECKING:` blocks (annotations only, never run) only when `type_only` is set."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if not type_only and _in_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from components import registry` imports the submodule when one exists.
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        found += [(name, node.lineno) for name in names if name.split(".")[0] in prefixes]
    return found


def import_graph(root: Path, packages: tuple[str, ...], type_only: bool = False) -> dict[str, list[tuple[str, int]]]:
    """{module: [(imported module, line), ...]} for every module of `packages` under `root`; imported names that
    are not modules (functions, classes) are resolved to the module that defines them. `type_only` adds the imports
    made for annotations alone (a design's circles and layers count them; what runs does not)."""
    files = {module_name(p, root): p for package in packages for p in sorted((root / package).rglob("*.py"))}
    graph = {}
    for name, path in files.items():
        edges = []
        for target, line in imports_of(path, root, packages, type_only):
            while target and target not in files:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.append((target, line))
        graph[name] = sorted(set(edges))
    return graph


def closure(graph: dict[str, list[tuple[str, int]]], start: str) -> set[str]:
    """Every module `start` needs, directly or not, including the packages that hold them."""
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in graph]
        todo += [target for target, _ in graph.get(module, [])]
    return seen


def find_cycle(graph: dict[str, list[tuple[str, int]]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target, _ in graph.get(node, []):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (found := visit(node)):
            return found
    return None
