"""Fail when a module is longer than the house limit (~300 lines): a long module is several ideas.

    python tools/check_module_size.py crawler bench      # --max 300 by default

Counts physical lines, docstrings and comments included (they are part of what a reader must hold).
Exit 0 when every .py file under the given directories is within the limit, 1 otherwise (each listed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def oversized(roots: list[Path], limit: int) -> list[tuple[Path, int]]:
    found = []
    for root in roots:
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for path in files:
            with path.open("rb") as handle:
                lines = sum(1 for _ in handle)
            if lines > limit:
                found.append((path, lines))
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", type=Path, default=[Path("crawler")])
    parser.add_argument("--max", type=int, default=300, help="most lines a module may have")
    args = parser.parse_args(argv)
    found = oversized(args.roots, args.max)
    for path, lines in found:
        print(f"{path}: {lines} lines (at most {args.max})")
    print(f"{len(found)} module(s) over {args.max} lines")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
