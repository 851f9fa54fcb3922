"""Fold a big manifest on several CPUs: this process folds the first part while child processes read
the others into logs (`scan.record`), replayed here in order after it (the fold is order-dependent).

    folded = scan_parallel.fold(path, state, start, on_bad_line)   # same result as scan.fold

A part is worth a process past MIN_BYTES (a child costs a Python start-up, ~0.1-0.2 s of CPU); model
crawls (which index uuids in order) stay in one process. A child that cannot start or fails is no
error: its part is then folded here, as if there were one CPU fewer.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

from crawler.state import scan
from crawler.state.fold import ResumeState

MIN_BYTES = 96 << 20  # per process (~270k records of the crawler's shape): below, a start-up eats the gain
MAX_PARTS = 8
# A child spends its first ~0.2 s starting Python: this process, already running, reads that much more.
HEAD_START = 32 << 20
_WINDOW = 1 << 20  # how far past a cut a line start is looked for


def fold(path: Path, state: ResumeState, start: int = 0, on_bad_line: scan.OnBadLine | None = None,
         cpus: int | None = None) -> scan.Folded:
    """`scan.fold` of the whole file from `start`, in parts: one per CPU, each at least MIN_BYTES."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return scan.Folded(start, 0, 0)
    cpus = cpus if cpus is not None else _cpus()
    parts = 1 if state.refs is not None else min(cpus, MAX_PARTS, (size - start) // max(MIN_BYTES, 1))
    cuts = [start]
    head = min(HEAD_START, (size - start) // max(parts, 1) // 2)
    for k in range(1, parts):
        at = _line_start(path, start + (size - start) * k // parts + head, size)
        if at is not None and at > cuts[-1]:
            cuts.append(at)
    if len(cuts) == 1:
        return scan.fold(path, state, start, on_bad_line)
    cuts.append(size)
    with contextlib.ExitStack() as stack:
        children = [_Child(path, a, b, stack) for a, b in itertools.pairwise(cuts[1:])]
        try:
            first = scan.fold(path, state, start, on_bad_line, end=cuts[1])
        except BaseException:
            for child in children:
                child.kill()
            raise
        covered, lines, records, used = first.covered, first.lines, first.records, 1
        for child in children:
            part = child.result()
            if part is None:  # no process for this part after all: fold it here
                here = scan.fold(path, state, child.start, _shifted(on_bad_line, lines), end=child.end)
                covered, lines, records = here.covered, lines + here.lines, records + here.records
                continue
            log, covered, count = part
            records += scan.replay(log, state, on_bad_line, lines_before=lines)
            lines += count
            used += 1
    return scan.Folded(covered, lines, records, parts=used)


def _shifted(on_bad_line: scan.OnBadLine | None, lines: int) -> scan.OnBadLine | None:
    """Line numbers of a part counted from the start of the whole read."""
    if on_bad_line is None:
        return None
    return lambda n, raw: on_bad_line(n + lines, raw)


class _Child:
    """`python -m crawler.state.scan_parallel PATH START END`: its log pickled to an unnamed file."""

    def __init__(self, path: Path, start: int, end: int, stack: contextlib.ExitStack) -> None:
        self.start, self.end = start, end
        self.out: IO[bytes] = stack.enter_context(tempfile.TemporaryFile())
        cmd = [sys.executable, "-m", "crawler.state.scan_parallel", str(path), str(start), str(end)]
        try:
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                cmd, stdout=self.out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        except OSError:
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def result(self) -> tuple[scan.Log, int, int] | None:
        if self.proc is None or self.proc.wait() != 0:
            return None
        self.out.seek(0)
        try:
            log, covered, lines = pickle.load(self.out)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError):
            return None
        return log, covered, lines


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _line_start(path: Path, near: int, size: int) -> int | None:
    """The first line start at or after `near` (just past a newline), if one is close and before `size`."""
    with open(path, "rb") as f:
        f.seek(near - 1 if near else 0)
        window = f.read(_WINDOW)
    newline = window.find(b"\n")
    at = (near - 1 if near else 0) + newline + 1
    return at if newline >= 0 and at < size else None


def _main(argv: list[str]) -> None:
    path, start, end = Path(argv[0]), int(argv[1]), int(argv[2])
    pickle.dump(scan.record(path, start, end), sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)


if __name__ == "__main__":
    _main(sys.argv[1:])
