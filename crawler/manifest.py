"""The crawl's durable memory: an append-only JSON-lines log of image outcomes, checkpoints and runs.

Records are only ever appended (in small batches, one write(2) each), so kill -9 can at worst tear
the last line; readers skip a bad line, report its number once, and never rewrite the user's file.
The effective state of an image is its last record.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

MANIFEST_NAME = "manifest.jsonl"
from .keys import Key, KeySet


class DiskFull(OSError):
    """The disk holding the mirror is full; the crawl must stop, not fail items one by one."""


def key_of(record: dict[str, Any]) -> Key | None:
    ident = record.get("id")
    if isinstance(ident, int) and not isinstance(ident, bool):
        return ident
    uuid = record.get("uuid")
    return uuid if isinstance(uuid, str) and uuid else None


def iter_records(path: Path, on_bad_line: Callable[[int, bytes], None] | None = None) -> Iterator[dict[str, Any]]:
    """Every well-formed record in order, streaming; `on_bad_line(number, raw)` for each torn/garbage line."""
    for _offset, record in iter_records_at(path, on_bad_line):
        yield record


def iter_records_at(path: Path, on_bad_line: Callable[[int, bytes], None] | None = None,
                    start: int = 0, progress: list[int] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(byte offset of the line, record) for every well-formed record from byte `start` (a line start).

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
            offset += len(line)
            if progress is not None:
                progress[0], progress[1] = offset, number
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
                if on_bad_line is not None:
                    on_bad_line(number, line)
                continue
            yield at, record


@dataclass(slots=True)
class ResumeState:
    """What a new run needs from the log: keys already settled, failures to retry, where to resume.

    Built by folding every record in order (`feed`), for all queries at once, so the fold can be
    saved (`snapshot.py`) and continued from where it stopped; `for_query` then picks one query's view.
    With group commit on, records past the last `durable` marker are not yet known to survive a power
    loss: their done records are listed in `unverified` (for the crawl to re-check the files), and a
    checkpoint past the marker is not trusted (the pages before it are walked again; done ids are skipped).
    """

    done: KeySet = field(default_factory=KeySet)
    gone: KeySet = field(default_factory=KeySet)
    failed: dict[Key, dict[str, Any]] = field(default_factory=dict)
    checkpoint: dict[str, Any] | None = None
    high_water: str | None = None  # follow: createdAt of the newest item of the last complete pass
    refs: set[tuple[Key, str]] | None = None  # model crawls: known (image, model version) pairs
    by_uuid: dict[str, int] | None = None  # model crawls: uuid -> id of every image recorded with both
    unverified: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: list[int] = field(default_factory=list)
    records: int = 0
    # The fold's own state (all queries), kept so that it can be continued after a snapshot.
    durable_upto: int | None = None
    tail: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # done records past the last marker
    checkpoints: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    high_waters: dict[str, str] = field(default_factory=dict)
    tainted: bool = False  # a write failed midway: the fold may not match the file, never snapshot it
    covered: int = 0  # manifest bytes this fold has read (set by a snapshot)
    lines: int = 0  # and their lines, so bad-line numbers stay true past a snapshot

    @classmethod
    def load(cls, path: Path, query: str, models: bool = False, snapshots: bool = True,
             save: bool = True) -> "ResumeState":
        """`models`: also index sources and uuids (model images may come without an id).

        With `snapshots`, a saved fold covering the start of the log is reused and only what was
        appended since is read; a fold that read much is saved for the next start, unless `save`
        is False (readers that must not write to the mirror, such as --dry-run).
        """
        from . import snapshot
        state = snapshot.load(path, models) if snapshots else None
        if state is None:
            state = cls(refs=set() if models else None, by_uuid={} if models else None)
        fresh = 0
        first = state.lines
        progress = [state.covered, 0]
        for offset, record in iter_records_at(path, lambda n, _raw: state.bad_lines.append(first + n),
                                              start=state.covered, progress=progress):
            state.feed(offset, record)
            fresh += 1
        state.covered, state.lines = progress[0], first + progress[1]
        if snapshots and save and fresh >= snapshot.WORTH_SAVING:
            snapshot.save(path, state)
        return state.for_query(query)

    def feed(self, offset: int, record: dict[str, Any]) -> None:
        self.records += 1
        kind = record["kind"]
        if kind == "image":
            key = key_of(record)
            if key is None:  # written by something else; nothing we could skip or retry
                return
            if self.refs is not None:
                if isinstance(record.get("source"), str):
                    self.refs.add((key, record["source"]))
                if isinstance(key, int) and isinstance(record.get("uuid"), str):
                    self.by_uuid[record["uuid"]] = key  # type: ignore[index]
            status = record.get("status")
            # The last record of an image is its state (as status, export and compact read it).
            if status == "done":
                self.done.add(key)
                self.failed.pop(key, None)
                self.gone.discard(key)
                # Only what a re-check needs: holding whole records (with their items) until the next
                # commit churned the allocator enough to grow RSS with every image.
                self.tail.append((offset, {"id": record.get("id"), "uuid": record.get("uuid"),
                                           "path": record.get("path"), "sha256": record.get("sha256")}))
            elif status == "gone":
                self.gone.add(key)
                self.failed.pop(key, None)
                self.done.discard(key)
            elif status == "failed":
                self.failed[key] = record
                self.done.discard(key)
                self.gone.discard(key)
        elif kind == "durable" and isinstance(record.get("upto"), int):
            upto = self.durable_upto = record["upto"]
            self.tail = [(o, r) for o, r in self.tail if o >= upto]
            for query, entries in self.checkpoints.items():
                trusted = [c for c in entries if c[0] < upto]
                self.checkpoints[query] = trusted[-1:] + [c for c in entries if c[0] >= upto]
        elif kind == "checkpoint" and isinstance(record.get("query"), str):
            entries = self.checkpoints.setdefault(record["query"], [])
            entries.append((offset, record))
            if self.durable_upto is None:
                del entries[:-1]  # without group commit every record is taken as it is: keep the last
        elif kind == "ref" and self.refs is not None:
            key = key_of(record)
            if key is not None and isinstance(record.get("source"), str):
                self.refs.add((key, record["source"]))
        elif kind == "hwm" and isinstance(record.get("query"), str) and isinstance(record.get("created_at"), str):
            self.high_waters[record["query"]] = record["created_at"]

    def for_query(self, query: str) -> "ResumeState":
        if self.durable_upto is not None:
            self.unverified = [r for _o, r in self.tail]
        self.checkpoint = self.checkpoint_of(query)
        self.high_water = self.high_waters.get(query)
        return self

    def checkpoint_of(self, query: str) -> dict[str, Any] | None:
        """The last checkpoint of `query` that can be trusted (before the last durable marker, if any)."""
        entries = self.checkpoints.get(query, [])
        if self.durable_upto is not None:
            entries = [c for c in entries if c[0] < self.durable_upto]
        return entries[-1][1] if entries else None

    def forget(self, record: dict[str, Any]) -> None:
        """A done record whose file did not survive: the image is to be fetched again."""
        key = key_of(record)
        if key is not None:
            self.done.discard(key)

    def resume_position(self, query: str | None = None) -> dict[str, Any] | None:
        """The checkpoint to continue from (of this query, or of `query`, one chain of a plan);
        None means from the start (new query, or the feed was finished)."""
        checkpoint = self.checkpoint if query is None else self.checkpoint_of(query)
        if checkpoint is None or checkpoint.get("end"):
            return None
        return checkpoint


class ManifestWriter:
    """Appends records, one write(2) each by default.

    A record reaches the kernel as soon as it is appended, so kill -9 loses at most the images still
    in flight (a write is microseconds next to a download). `flush_bytes` > 0 batches instead: for
    replaying or generating large logs where that guarantee does not matter.
    """

    __slots__ = ("path", "_fd", "_buffer", "_last_flush", "flush_bytes", "flush_seconds", "offset", "durable_offset",
                 "on_append", "appended", "broken")

    def __init__(self, path: Path, flush_bytes: int = 0, flush_seconds: float = 0.25,
                 on_append: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        """`on_append(offset, record)` sees every record as written: the crawl keeps its fold current with it."""
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
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    self._buffer += b"\n"

    def append(self, record: dict[str, Any]) -> None:
        if self.on_append is not None:
            self.on_append(self.offset + len(self._buffer), record)
        self.appended += 1
        self._buffer += orjson.dumps(record)
        self._buffer += b"\n"
        if len(self._buffer) >= self.flush_bytes or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        view = memoryview(self._buffer)
        written = 0
        try:
            while written < len(view):
                written += os.write(self._fd, view[written:])
        except OSError as e:
            self.broken = True
            del view
            del self._buffer[:written]
            self.offset += written
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(e.errno, f"no space left to write the manifest {self.path}") from None
            raise
        del view
        self._buffer.clear()
        self.offset += written

    def sync(self) -> None:
        """fsync the log; safe from another thread while the loop appends (never during close)."""
        os.fsync(self._fd)

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
