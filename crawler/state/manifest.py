"""The crawl's durable memory: an append-only JSON-lines log of image outcomes, checkpoints and runs.

Records are only ever appended (in small batches, one write(2) each), so kill -9 can at worst tear
the last line; readers skip a bad line, report its number once, and never rewrite the user's file.
The effective state of an image is its last record. What each record holds, and how to ask it, is
`crawler.state.records`; this module only moves records to and from the file, and is the one way the
log is read record by record (`iter_records`, `iter_records_at`); `crawler.state.scan` folds it in bulk,
to the same result, when a mirror starts without a resume snapshot.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from crawler.state.records import Record
from crawler.store.errors import DiskFull

MANIFEST_NAME = "manifest.jsonl"


def iter_records(path: Path, on_bad_line: Callable[[int, bytes], None] | None = None) -> Iterator[Record]:
    """Every well-formed record in order, streaming; `on_bad_line(number, raw)` for each torn/garbage line."""
    for _offset, record in iter_records_at(path, on_bad_line):
        yield record


def iter_records_at(path: Path, on_bad_line: Callable[[int, bytes], None] | None = None,
                    start: int = 0, progress: list[int] | None = None,
                    end: int | None = None) -> Iterator[tuple[int, Record]]:
    """(byte offset of the line, record) for every well-formed record from byte `start` (a line start).

    A missing file has no records. `end`, if given, stops before the first line starting at or past it
    (readers beside a running crawl fix `end` to the size the file had when they began).
    `progress`, if given, is kept at [bytes read up to, lines read] as the file is read.
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    offset = start
    with f:
        f.seek(start)
        for number, line in enumerate(f, 1):
            at = offset
            if end is not None and at >= end:
                return
            offset += len(line)
            if progress is not None:
                progress[0], progress[1] = offset, number
            if not line.strip():
                continue
            record = parse_line(line)
            if record is None:
                if on_bad_line is not None:
                    on_bad_line(number, line)
                continue
            yield at, record


def parse_line(line: bytes) -> Record | None:
    """The record on one (non-blank) line, or None when it holds none: torn, not JSON, or without a kind."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("kind"), str) else None


class ManifestWriter:
    """Appends records, one write(2) each by default.

    A record reaches the kernel as soon as it is appended, so kill -9 loses at most the images still
    in flight (a write is microseconds next to a download). `flush_bytes` > 0 batches instead: for
    replaying or generating large logs where that guarantee does not matter.
    """

    __slots__ = ("path", "_fd", "_buffer", "_last_flush", "flush_bytes", "flush_seconds", "offset", "durable_offset",
                 "on_append", "appended", "broken", "_lines", "_buffered_lines")

    def __init__(self, path: Path, flush_bytes: int = 0, flush_seconds: float = 0.25,
                 on_append: Callable[[int, Record], None] | None = None, counted: tuple[int, int] | None = None) -> None:
        """`on_append(offset, record)` sees every record as written: the crawl keeps its fold current with it.
        `counted`: (bytes, lines) of the file as its last reader counted them (a torn last line is a line);
        if the file still has that size, `end()` keeps the count, so a resume snapshot need not read back
        what this writer wrote."""
        self.path = path
        self.on_append = on_append
        self.appended = 0  # records (so lines) appended by this writer
        self.broken = False  # a write failed: what is in the file may differ from what was appended
        self.flush_bytes = flush_bytes
        self.flush_seconds = flush_seconds
        self._buffer = bytearray()
        self._last_flush = time.monotonic()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        # A torn last line from a killed run must not swallow our first record: start on a new line.
        size = os.fstat(self._fd).st_size
        self.offset = size  # bytes handed to the kernel so far (the file's size)
        self.durable_offset = 0
        self._lines = counted[1] if counted is not None and counted[0] == size else None  # the file's, when known
        self._buffered_lines = 0
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    self._buffer += b"\n"  # ends a line its readers already count: no line of its own

    def append(self, record: Record) -> None:
        if self.on_append is not None:
            self.on_append(self.offset + len(self._buffer), record)
        self.appended += 1
        line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        buffer = self._buffer
        if not buffer and not self.flush_bytes:
            self._write(line, 1)  # the default: straight to the kernel, not copied through the buffer
            return
        buffer += line
        self._buffered_lines += 1
        if len(buffer) >= self.flush_bytes or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if self._buffer:
            self._write(self._buffer, self._buffered_lines)
            self._buffer.clear()
            self._buffered_lines = 0

    def _write(self, data: bytes | bytearray, lines: int) -> None:
        """All of `data` (holding `lines` lines) to the file; on an error what did not reach it stays buffered."""
        written = 0
        try:
            written = os.write(self._fd, data)
            if written < len(data):  # a short write: the rest, in turn
                with memoryview(data) as view:
                    while written < len(view):
                        written += os.write(self._fd, view[written:])
        except OSError as e:
            self.broken = True
            self._lines = None
            self.offset += written
            if data is self._buffer:
                del data[:written]
            else:
                self._buffer += data[written:]
                self._buffered_lines += lines
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(e.errno, f"no space left to write the manifest {self.path}") from None
            raise
        self.offset += written
        if self._lines is not None:
            self._lines += lines

    def end(self) -> tuple[int, int] | None:
        """(bytes, lines) of the file as this writer left it; None when the line count is not known
        (the file was not the size `counted` said, a write failed, or records are still buffered)."""
        if self._lines is None or self._buffer:
            return None
        return self.offset, self._lines

    def sync(self) -> None:
        """fsync the log; safe from another thread while the loop appends (never during close)."""
        os.fsync(self._fd)

    def fileno(self) -> int:
        """The log's descriptor, for a group commit's syncfs of its filesystem (same rule as `sync`)."""
        return self._fd

    def close(self, sync: bool = True) -> None:
        if self._fd < 0:
            return
        try:
            self.flush()
            if sync:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1
