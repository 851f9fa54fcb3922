"""Fail when any module of a package imports itself through a chain of imports.

    python tools/check_cycles.py crawler        # exit 0: no cycle; exit 1: each cycle printed

Every import statement anywhere in a module counts -- module level, inside functions, under
`if TYPE_CHECKING:` -- because a cycle hidden behind a deferred import is still a cycle in the design.
`from pkg import name` is an import of `pkg.name` when that is a module, else of `pkg` (its __init__).
Only the standard library: it reads the source with `ast` and never imports the package.
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from pathlib import Path


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every .py under the package directory `root`."""
    base = root.parent
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest prefix of `name` that is a module of the package."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".")
                drop = node.level - 1 if is_package else node.level
                anchor = anchor[: len(anchor) - drop] if drop else anchor
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            resolved = _resolve(target, known)
            if resolved is not None and resolved != module:
                out.add(resolved)
    return out


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components of more than one module, i.e. the cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
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
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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


def shortest_cycle(graph: dict[str, set[str]], start: str, within: set[str]) -> list[str]:
    """One shortest chain start -> ... -> start inside the component, to show the reader."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node] & within):
            if child == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(previous[chain[-1]])
                return [*reversed(chain), start]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    return [start]


def main(argv: list[str]) -> int:
    roots = [Path(arg) for arg in argv] or [Path("crawler")]
    status = 0
    for root in roots:
        known = module_names(root)
        graph = {name: imports_of(name, path, known) for name, path in known.items()}
        cycles = strongly_connected(graph)
        for component in cycles:
            chain = shortest_cycle(graph, component[0], set(component))
            print(f"import cycle among {len(component)} modules: {' -> '.join(chain)}")
            if len(component) > len(chain) - 1:
                print(f"  (all in the cycle: {', '.join(component)})")
        edges = sum(len(targets) for targets in graph.values())
        print(f"{root}: {len(known)} modules, {edges} imports, {len(cycles)} cycle(s)")
        status |= bool(cycles)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
