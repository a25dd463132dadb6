"""The shape DESIGN.md promises, checked on the source (issue 14): the top-level packages
import one way (ground floor at the bottom, `qsign` at the top), no module imports
itself back through a cycle, and no module is over 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("ground", "firmware_sim", "agent", "ca", "validation", "portal", "qsign")
# What each package may import of the others (DESIGN.md "The parts").
ALLOWED: dict[str, set[str]] = {
    "ground": set(),
    "firmware_sim": {"ground"},
    "agent": {"ground"},
    "ca": {"ground"},
    "validation": {"ground"},
    "portal": {"ground", "validation"},
    "qsign": {"ground", "firmware_sim", "agent", "ca", "validation", "portal"},
}
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, name: str, is_package: bool) -> set[str]:
    """Modules imported at module level, outside `if TYPE_CHECKING:` (what runs on
    import and can form a cycle)."""
    tree = ast.parse(path.read_text(), str(path))
    imported: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")
                    anchor = anchor if is_package else anchor[:-1]
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                imported.add(base)
                imported.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If):
                test = node.test
                if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                    continue
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(tree.body)
    return imported


MODULES = _modules()
GRAPH = {name: {m for m in _imports(path, name, path.name == "__init__.py")
                if m in MODULES and m != name}
         for name, path in MODULES.items()}


def test_packages_import_one_way() -> None:
    wrong = sorted(f"{name} imports {target}"
                   for name, targets in GRAPH.items() for target in targets
                   if (src := name.split(".")[0]) != (dst := target.split(".")[0])
                   and dst not in ALLOWED[src])
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    # Tarjan's strongly connected components over the module graph.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strongconnect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                strongconnect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            # A package's __init__ re-exporting its own modules is not a cycle of logic.
            if len(component) > 1 and not _only_package_reexports(component):
                cycles.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            strongconnect(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def _only_package_reexports(component: list[str]) -> bool:
    members = set(component)
    for name in component:
        for target in GRAPH[name] & members:
            if not (target.startswith(name + ".") or name.startswith(target + ".")):
                return False
    return True


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_over_600_lines(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(REPO)}: {lines} lines"
