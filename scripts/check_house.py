"""The house rules of src/ (docs/architecture.md), checked from the source alone:

    python scripts/check_house.py     # prints the import table; exit 1 on a breach

- no module over 300 lines, no function over 50 lines;
- no import cycle, however long, between the package's parts: each folder is one part, and
  each module at the package root (``train.py``, ``errors.py``, ...) is a part of its own, so
  a cycle through the root (``run/`` importing a root module that imports ``run/``) is found;
- only ``commands/`` (the entry points) is imported by no other part: a library never
  imports a command.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tl_experiments"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 300, 50
COMMANDS = "commands"


def part_of(path: Path, package: Path = PACKAGE) -> str:
    """The part a module belongs to: its top folder, or the root module's own file name."""
    rel = path.relative_to(package)
    return rel.parts[0] if len(rel.parts) > 1 else rel.name


def _target(name: str, package: Path) -> str | None:
    """The part that ``tl_experiments.<name>`` names (``run``, ``errors.py``), if any."""
    top = name.split(".")[0]
    if (package / top).is_dir():
        return top
    return f"{top}.py" if (package / f"{top}.py").is_file() else None


def imported_parts(tree: ast.AST, package: Path = PACKAGE) -> set[str]:
    """Every part of the package a module imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == package.name:  # from tl_experiments import train
                names = [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            head, _, rest = name.partition(".")
            if head == package.name and rest:
                found.add(_target(rest, package))
    return found - {None}


def breaches(package: Path = PACKAGE) -> tuple[list[str], dict[str, set[str]]]:
    """Every breach of the house rules, and the import graph between the package's parts."""
    found, edges = [], defaultdict(set)
    for path in sorted(package.rglob("*.py")):
        text = path.read_text()
        rel = path.relative_to(package)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            found.append(f"{rel}: {len(text.splitlines())} lines (> {MAX_MODULE_LINES})")
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    found.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
        part = part_of(path, package)
        edges[part] |= imported_parts(tree, package) - {part}
    found += [f"import cycle: {' -> '.join(c)}" for c in cycles(edges)]
    found += [
        f"{p} imports {COMMANDS}/ (a library imports no command)"
        for p in sorted(edges)
        if COMMANDS in edges[p] and p != COMMANDS
    ]
    return found, {k: v for k, v in edges.items() if v}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle between parts (root modules included), each once."""
    out = []

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt == path[0]:
                out.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:  # each cycle once, from its least part
                walk(nxt, [*path, nxt])

    for start in sorted(edges):
        walk(start, [start])
    return out


def main() -> int:
    found, edges = breaches()
    for part in sorted(edges):
        name = part if part.endswith(".py") else f"{part}/"
        print(f"{name} imports {', '.join(sorted(edges[part]))}")
    for line in found:
        print(f"BREACH {line}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
