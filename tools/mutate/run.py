"""`make mutate`: mutation testing of the modules that carry the promises, against their fast unit tests.

    .venv/bin/python tools/mutate/run.py [--jobs 2]

Copies crawler/, tests/ and pyproject.toml into build/mutate/ with tools/mutate/setup.cfg (which modules
to mutate, which tests kill them), runs mutmut there -- the work tree is never modified -- and ends with
one line, `mutation score: K/N killed`. A mutant that times out counts as killed (the tests noticed).
Exit 1 when a surviving mutant is neither killed nor listed, with its reason, in tools/mutate/equivalent.txt;
each such mutant is printed with its diff so a test can be written for it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
KILLED = {"killed", "timeout"}


def equivalent() -> dict[str, str]:
    """Mutant name -> why it cannot change behaviour, from equivalent.txt (`name  reason`, # comments)."""
    listed = {}
    for line in (HERE / "equivalent.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, reason = line.partition(" ")
            listed[name] = reason.strip()
    return listed


def prepare(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("crawler", "tests"):
        shutil.copytree(REPO / name, work / name, ignore=ignore)
    shutil.copy2(REPO / "pyproject.toml", work / "pyproject.toml")
    shutil.copy2(HERE / "setup.cfg", work / "setup.cfg")


def mutmut(work: Path, *args: str, log: Path | None = None) -> str:
    command = [sys.executable, "-m", "mutmut", *args]
    if log is None:
        return subprocess.run(command, cwd=work, check=True, capture_output=True, text=True).stdout
    with log.open("w") as out:  # the progress spinner is noise; kept for a post-mortem
        subprocess.run(command, cwd=work, check=True, stdout=out, stderr=subprocess.STDOUT)
    return ""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "mutate")
    args = parser.parse_args(argv)

    prepare(args.work)
    mutmut(args.work, "run", "--max-children", str(args.jobs), log=args.work / "mutmut-run.log")
    results = {}
    for line in mutmut(args.work, "results", "--all", "true").splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep:
            results[name] = status
    listed = equivalent()
    survivors = sorted(name for name, status in results.items() if status not in KILLED)
    unexplained = [name for name in survivors if name not in listed]
    for name in unexplained:
        print(f"survived ({results[name]}): {name}")
        print(mutmut(args.work, "show", name))
    stale = sorted(set(listed) - set(survivors))
    if stale:
        print(f"listed as equivalent but no longer surviving (remove from equivalent.txt): {', '.join(stale)}")
    killed = len(results) - len(survivors)
    print(f"{len(survivors) - len(unexplained)} survivor(s) listed as equivalent, {len(unexplained)} unexplained")
    print(f"mutation score: {killed}/{len(results)} killed")
    return 1 if unexplained or not results else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
