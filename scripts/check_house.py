"""The house rules of src/ (docs/architecture.md), checked from the source alone:

    python scripts/check_house.py     # prints the folder import table; exit 1 on a breach

- no module over 300 lines, no function over 50 lines;
- no import cycle between the package's folders, however long.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tl_experiments"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 300, 50


def folder_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else ""


def breaches() -> tuple[list[str], dict[str, set[str]]]:
    """Every breach of the size rules, and the folder import graph."""
    found, edges = [], defaultdict(set)
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        rel = path.relative_to(PACKAGE)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            found.append(f"{rel}: {len(text.splitlines())} lines (> {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    found.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
            module = getattr(node, "module", None) if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith("tl_experiments."):
                target = module.split(".")[1]
                if (PACKAGE / target).is_dir() and target != folder_of(path):
                    edges[folder_of(path)].add(target)
    found += [f"import cycle: {' -> '.join(c)}" for c in cycles(edges)]
    return found, edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Folder cycles (the package root, "", imports everything and is left out)."""
    out = []

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt == path[0]:
                out.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:  # each cycle once, from its least folder
                walk(nxt, [*path, nxt])

    for start in sorted(k for k in edges if k):
        walk(start, [start])
    return out


def main() -> int:
    found, edges = breaches()
    for folder in sorted(k for k in edges if k):
        print(f"{folder}/ imports {', '.join(sorted(edges[folder]))}")
    for line in found:
        print(f"BREACH {line}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
