"""Fold a manifest into a `ResumeState` fast: the same fold as feeding every record of
`iter_records_at` to `ResumeState.feed`, at several times the speed, for a mirror without a snapshot.

    folded = scan.fold(path, state, start=state.covered, on_bad_line=...)
    scan.settle(path, state)   # before state.for_query, when the tail is needed

Most of a mirror's log is `done` image records, whose only effect on the fold is adding an id to the
done-set (and, until a durable marker covers them, a re-check entry in the tail). Each line is
decoded by msgspec into just `kind`, `id` and `status` -- the rest of the line is validated, not
built -- and a line that is exactly such a record (kind "image", status "done", an int id in
0..2^63) only has its id added, in batches; its re-check entry is kept as a byte range of the log
(`ResumeState.spans`) and built by `settle` only if it is still past the last marker at the end.
Every other line (another kind or status, an odd id, a blank, torn or garbage line, one that is not
valid UTF-8) is folded exactly as before, from orjson's parse, at its offset and line number.

How it differs: only where msgspec and orjson disagree on what JSON is. orjson (yyjson) refuses a
number beyond a double's range (1e400, or an integer of 310 digits); msgspec skips it, so a line
holding one that is otherwise a done record is folded as done instead of reported unreadable. No
JSON writer emits such a number (orjson writes inf as null). tests/unit/state/test_scan_unit.py
folds random logs, damaged every other way, both ways and compares the states.
"""

from __future__ import annotations

import codecs
import heapq
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from pyroaring import BitMap64

from crawler.state.fold import ResumeState, recheck_entry
from crawler.state.manifest import parse_line
from crawler.state.records import DONE, key_of, status_of

BLOCK = 1 << 16  # bytes read at a time: the lines split from it stay in the CPU's cache (measured best)

OnBadLine = Callable[[int, bytes], None]


class _Done(msgspec.Struct, gc=False):
    """A done image record, as far as the fold cares. Larger ids are left to orjson, which reads
    integers past 64 bits as floats (and then the id is no key)."""

    kind: Literal["image"]
    id: Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]
    status: Literal["done"]


class _ModelDone(_Done, gc=False):
    """Model crawls also index the image's uuid and the model version it came from."""

    uuid: Any = None
    source: Any = None


_DONE = msgspec.json.Decoder(_Done)
_MODEL_DONE = msgspec.json.Decoder(_ModelDone)


@dataclass(frozen=True, slots=True)
class Folded:
    covered: int  # the offset the fold read up to (the file's size when it ended, or `end`)
    lines: int  # lines read from `start`
    records: int  # well-formed records among them
    parts: int = 1  # processes that read it (`scan_parallel`)


def fold(path: Path, state: ResumeState, start: int = 0, on_bad_line: OnBadLine | None = None,
         end: int | None = None) -> Folded:
    """Feed every record of `path` from byte `start` (a line start) to `state`, in order.

    `on_bad_line(number, raw)` for each torn or garbage line, numbered from 1 at `start`. A missing
    file has no records. `end`, if given, is a line start where reading stops.
    """
    sink = _Fold(state, on_bad_line)
    covered, lines = _scan(path, start, end, sink, _MODEL_DONE if state.refs is not None else _DONE)
    return Folded(covered, lines, sink.records)


Log = list[tuple[Any, ...]]


def record(path: Path, start: int, end: int | None = None) -> tuple[Log, int, int]:
    """What `fold` would do from `start`, as a log to `replay` later (`scan_parallel` reads a part of
    the manifest in another process this way): (log, covered, lines). Feed crawls only (no refs)."""
    sink = _Log()
    covered, lines = _scan(path, start, end, sink, _DONE)
    return sink.entries, covered, lines


def replay(log: Log, state: ResumeState, on_bad_line: OnBadLine | None = None, lines_before: int = 0) -> int:
    """Fold a `record` log into `state` (whose fold reached its start, `lines_before` lines in);
    returns the records folded."""
    sink = _Fold(state, on_bad_line)
    for entry in log:
        if entry[0] == "done":
            sink.done(BitMap64.deserialize(entry[1]), entry[2], entry[3], entry[4])
        else:
            sink.line(entry[1], entry[2], entry[3] + lines_before)
    return sink.records


def settle(path: Path, state: ResumeState) -> None:
    """Build the tail entries `state.spans` still holds as byte ranges, in offset order with the rest."""
    if not state.spans:
        return
    built: list[tuple[int, dict[str, Any]]] = []
    with open(path, "rb") as f:
        for first, end, lo in state.spans:
            f.seek(first)
            at = first
            for line in f.read(end - first).split(b"\n")[:-1]:
                if at >= lo:
                    parsed = parse_line(line)  # None: the one number orjson refuses (see the module's docstring)
                    if parsed is not None and status_of(parsed) == DONE and key_of(parsed) is not None:
                        built.append((at, recheck_entry(parsed)))
                at += len(line) + 1
    state.tail = list(heapq.merge(state.tail, built, key=itemgetter(0)))
    state.spans = []


def _scan(path: Path, start: int, end: int | None, sink: _Fold | _Log, decoder: msgspec.json.Decoder[Any]) -> tuple[int, int]:
    """Read lines from `start` to `end` (or the end of the file) into `sink`: (offset reached, lines)."""
    try:
        f = open(path, "rb", buffering=0)
    except FileNotFoundError:
        return start, 0
    scanner = _Scanner(sink, decoder.decode)
    at = start
    with f:
        f.seek(start)
        rest = b""
        left = -1 if end is None else end - start
        while left and (chunk := f.read(BLOCK if left < 0 else min(BLOCK, left))):
            left -= len(chunk) if left > 0 else 0
            data = rest + chunk if rest else chunk
            lines = data.split(b"\n")
            rest = lines.pop()  # after the last newline: the start of a line the next read completes
            if lines:
                at = scanner.block(lines, at, _utf8(data, len(data) - len(rest)))
        if rest:  # a last line without its newline (a torn write): read as it is
            scanner.number += 1
            sink.line(rest, at, scanner.number)
            at += len(rest)
    return at, scanner.number


def _utf8(data: bytes, end: int) -> bool:
    """Whether data[:end] is valid UTF-8: msgspec does not check the strings it skips, orjson does."""
    if data.isascii():
        return True
    try:
        codecs.utf_8_decode(memoryview(data)[:end], "strict", True)
    except UnicodeDecodeError:
        return False
    return True


class _Scanner:
    """Splits blocks of lines into runs of done records and the other lines, for a sink."""

    __slots__ = ("sink", "decode", "number")

    def __init__(self, sink: _Fold | _Log, decode: Callable[[bytes], _Done]) -> None:
        self.sink = sink
        self.decode = decode
        self.number = 0  # lines read so far

    def block(self, lines: list[bytes], at: int, fast: bool) -> int:
        """Fold whole lines starting at byte `at`; returns the offset after them."""
        sink = self.sink
        if not fast:
            for line in lines:
                self.number += 1
                sink.line(line + b"\n", at, self.number)
                at += len(line) + 1
            return at
        decode, index = self.decode, sink.index
        ids: list[int] = []
        run_at = at  # where the current run of done lines starts, `run_i` its first line
        run_i = 0
        for i, line in enumerate(lines):
            try:
                done = decode(line)
            except msgspec.MsgspecError:
                pass
            else:
                ids.append(done.id)
                if index is not None:
                    index(done)
                continue
            # Not a plain done record: fold the run before it, then it, in order.
            line_at = run_at + sum(map(len, lines[run_i:i])) + (i - run_i)
            if ids:
                sink.done(BitMap64(ids), len(ids), run_at, line_at)
                ids = []
            self.number += i - run_i + 1
            sink.line(line + b"\n", line_at, self.number)
            run_at, run_i = line_at + len(line) + 1, i + 1
        end = run_at + sum(map(len, lines[run_i:])) + (len(lines) - run_i)
        if ids:
            sink.done(BitMap64(ids), len(ids), run_at, end)
        self.number += len(lines) - run_i
        return end


class _Fold:
    """Applies runs and lines to a `ResumeState`, as `feed` would record by record."""

    __slots__ = ("state", "on_bad_line", "records", "index")

    def __init__(self, state: ResumeState, on_bad_line: OnBadLine | None) -> None:
        self.state = state
        self.on_bad_line = on_bad_line
        self.records = 0
        self.index = self._index if state.refs is not None else None

    def done(self, ids: BitMap64, count: int, first: int, end: int) -> None:
        """A run of `count` done records (of these ids, all >= 0) on the lines of [first, end)."""
        state = self.state
        self.records += count
        state.records += count
        state.done.add_ids(ids)
        if state.failed:  # from the smaller side: a log may hold many failures, a run many ids
            failed = state.failed
            hits = ([k for k in ids if k in failed] if len(ids) < len(failed) else
                    [k for k in failed if type(k) is int and k >= 0 and k in ids])
            for key in hits:
                del failed[key]
        if state.gone:
            state.gone.discard_ids(ids)
        state.spans.append((first, end, first))

    def _index(self, done: Any) -> None:  # a _ModelDone (model crawls decode those)
        state = self.state
        if isinstance(done.source, str):
            state.refs.add((done.id, done.source))  # type: ignore[union-attr]
        if isinstance(done.uuid, str):
            state.by_uuid[done.uuid] = done.id  # type: ignore[index]

    def line(self, line: bytes, at: int, number: int) -> None:
        """One line exactly as `iter_records_at` reads it and `feed` folds it."""
        if not line.strip():
            return
        parsed = parse_line(line)
        if parsed is None:
            if self.on_bad_line is not None:
                self.on_bad_line(number, line)
            return
        self.records += 1
        self.state.feed(at, parsed)


class _Log:
    """Keeps runs and lines to replay (`record`): ids packed, lines raw (a few: parsed when replayed)."""

    __slots__ = ("entries",)
    index = None

    def __init__(self) -> None:
        self.entries: Log = []

    def done(self, ids: BitMap64, count: int, first: int, end: int) -> None:
        self.entries.append(("done", ids.serialize(), count, first, end))

    def line(self, line: bytes, at: int, number: int) -> None:
        self.entries.append(("line", line, at, number))
