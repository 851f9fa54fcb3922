"""`make mutate`: mutation testing of the modules that carry the promises, against their fast unit tests.

    .venv/bin/python tools/mutate/run.py [--jobs 2] [--report-only]

Copies crawler/, tests/ and pyproject.toml into build/mutate/ with tools/mutate/setup.cfg (which modules
to mutate, which tests kill them), runs mutmut there -- the work tree is never modified -- and ends with
one line, `mutation score: K/N killed`. A mutant that times out counts as killed (the tests noticed).
Exit 1 when a surviving mutant is neither killed nor listed, with its reason, in tools/mutate/equivalent.txt;
each such mutant is printed with its diff so a test can be written for it.

mutmut numbers a function's mutants by position, so an edit to the function renames them: a listed
name can come to mean another mutant, and its reason would then hide a real survivor. So each listed
mutant carries its changed lines under its name (indented `-` and `+` lines, as `mutmut show` prints
them); a survivor listed under a name whose change differs counts as unexplained.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
KILLED = {"killed", "timeout"}


@dataclass
class Listed:
    reason: str
    change: list[str] = field(default_factory=list)  # the mutant's -/+ lines, stripped


def equivalent() -> dict[str, Listed]:
    """Mutant name -> why it cannot change behaviour and what it changes, from equivalent.txt
    (`name  reason`, then its indented -/+ lines; # comments)."""
    listed: dict[str, Listed] = {}
    last: Listed | None = None
    for raw in (HERE / "equivalent.txt").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if raw[:1].isspace():
            if last is None:
                raise SystemExit(f"equivalent.txt: a change line before any mutant: {raw!r}")
            last.change.append(line)
        else:
            name, _, reason = line.partition(" ")
            last = listed[name] = Listed(reason.strip())
    return listed


def change_of(diff: str) -> list[str]:
    """The changed lines of a `mutmut show` diff, stripped (the file names and hunk headers left out)."""
    return [line[0] + line[1:].strip() for line in diff.splitlines()
            if line[:1] in "-+" and not line.startswith(("---", "+++"))]


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
    parser.add_argument("--report-only", action="store_true",
                        help="judge the last run's results in --work again (after editing equivalent.txt)")
    args = parser.parse_args(argv)

    if not args.report_only:
        prepare(args.work)
        mutmut(args.work, "run", "--max-children", str(args.jobs), log=args.work / "mutmut-run.log")
    results = {}
    for line in mutmut(args.work, "results", "--all", "true").splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep:
            results[name] = status
    listed = equivalent()
    survivors = sorted(name for name, status in results.items() if status not in KILLED)
    unexplained = []
    for name in survivors:
        diff = mutmut(args.work, "show", name)
        if name in listed and listed[name].change == change_of(diff):
            continue
        unexplained.append(name)
        if name in listed:
            print(f"listed as equivalent, but {name} is now another change (was: {listed[name].change}):")
        print(f"survived ({results[name]}): {name}")
        print(diff)
    stale = sorted(set(listed) - set(survivors))
    if stale:
        print(f"listed as equivalent but no longer surviving (remove from equivalent.txt): {', '.join(stale)}")
    killed = len(results) - len(survivors)
    print(f"{len(survivors) - len(unexplained)} survivor(s) listed as equivalent, {len(unexplained)} unexplained")
    print(f"mutation score: {killed}/{len(results)} killed")
    return 1 if unexplained or not results else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
