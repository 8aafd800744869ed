"""Read the layer table of docs/architecture.md and every module's imports (with ast, imports
inside functions included); report upward imports and import cycles. Used by test_layers.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path


def read_layers(architecture_md: Path) -> list[tuple[str, list[str]]]:
    """[(layer name, [dotted prefixes])] in order, lowest first, from the markdown table whose
    header starts with ``| layer |``; a module cell lists backticked names relative to
    ``noisescope`` (``.`` is the package root)."""
    rows, inside = [], False
    for line in architecture_md.read_text().splitlines():
        if line.startswith("| layer |"):
            inside = True
            continue
        if inside:
            if not line.startswith("|"):
                break
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set(cells[0]) <= {"-", " ", ":"}:
                continue
            names = re.findall(r"`([^`]+)`", cells[1])
            rows.append((cells[0], ["noisescope" if n == "." else f"noisescope.{n}" for n in names]))
    if not rows:
        raise ValueError(f"no '| layer |' table in {architecture_md}")
    return rows


def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """Every ``noisescope`` module ``path`` imports, at any depth of its code.

    ``from noisescope.x import y`` imports the module ``noisescope.x.y`` when that is a module
    (then ``noisescope.x`` is only its package), else the module ``noisescope.x``."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "noisescope")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "noisescope":
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.add(sub if sub in modules else mod)
    return out


def layer_of(module: str, layers: list[tuple[str, list[str]]]) -> int | None:
    best, best_len = None, -1
    for i, (_name, prefixes) in enumerate(layers):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def check(root: Path, layers: list[tuple[str, list[str]]]) -> list[str]:
    """Problems: modules in no layer, upward imports, and import cycles between modules."""
    modules = {module_name(root, p): p for p in root.rglob("*.py")}
    problems = []
    graph: dict[str, set[str]] = {}
    for name, path in sorted(modules.items()):
        mine = layer_of(name, layers)
        if mine is None:
            problems.append(f"{name} is in no layer of the table")
            continue
        deps = {d for d in imports_of(path, name, set(modules)) if d in modules and d != name}
        graph[name] = deps
        for d in sorted(deps):
            theirs = layer_of(d, layers)
            if theirs is not None and theirs > mine:
                problems.append(f"upward import: {name} ({layers[mine][0]}) imports {d} ({layers[theirs][0]})")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found
