"""The shape of the code: the largest modules and the longest functions (what the issue notes quote).

    python scripts/code_shape.py [SRC_DIR] [--top N]

Lines are counted as the source has them (docstrings and comments included); a function's length
runs from its ``def`` to its last line, so a long parameter list counts.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def shape(root: Path) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    modules, functions = [], []
    for p in sorted(root.rglob("*.py")):
        src = p.read_text(encoding="utf-8")
        rel = p.relative_to(root).as_posix()
        modules.append((len(src.splitlines()), rel))
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.name}"))
    return sorted(modules, reverse=True), sorted(functions, reverse=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", nargs="?", default=str(Path(__file__).resolve().parents[1] / "src" / "envfoundry"))
    ap.add_argument("--top", type=int, default=12)
    a = ap.parse_args()
    modules, functions = shape(Path(a.src))
    print(f"{len(modules)} modules, {sum(n for n, _ in modules):,} lines")
    print("largest modules:")
    for n, name in modules[: a.top]:
        print(f"  {n:5d}  {name}")
    print("longest functions:")
    for n, name in functions[: a.top]:
        print(f"  {n:5d}  {name}")


if __name__ == "__main__":
    main()
