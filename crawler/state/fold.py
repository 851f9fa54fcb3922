"""The fold of the manifest: what a new run needs from the log, built by reading its records in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crawler.keys import Key, KeySet
from crawler.state import records
from crawler.state.records import CHECKPOINT, DONE, FAILED, GONE, HWM, IMAGE, REF, key_of


def recheck_entry(record: dict[str, Any]) -> dict[str, Any]:
    """What a re-check of a done record needs: holding whole records (with their items) until the
    next commit churned the allocator enough to grow RSS with every image."""
    return {"id": record.get("id"), "uuid": record.get("uuid"), "path": record.get("path"),
            "sha256": record.get("sha256")}


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
    # More of the tail, not yet built (`scan.fold` keeps runs of done records as byte ranges): the done
    # records on lines starting in [lo, end) of the manifest, read from the line start `first`.
    # `scan.settle` turns them into `tail` entries; `for_query` needs that done first.
    spans: list[tuple[int, int, int]] = field(default_factory=list)  # (first, end, lo)
    checkpoints: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    high_waters: dict[str, str] = field(default_factory=dict)
    tainted: bool = False  # a write failed midway: the fold may not match the file, never snapshot it
    covered: int = 0  # manifest bytes this fold has read (set by a snapshot)
    lines: int = 0  # and their lines, so bad-line numbers stay true past a snapshot

    def feed(self, offset: int, record: dict[str, Any]) -> None:
        self.records += 1
        kind = record["kind"]
        if kind == IMAGE:
            key = key_of(record)
            if key is None:  # written by something else; nothing we could skip or retry
                return
            if self.refs is not None:
                if isinstance(record.get("source"), str):
                    self.refs.add((key, record["source"]))
                if isinstance(key, int) and isinstance(record.get("uuid"), str):
                    self.by_uuid[record["uuid"]] = key  # type: ignore[index]
            status = records.status_of(record)
            # The last record of an image is its state (as status, export and compact read it).
            if status == DONE:
                self.done.add(key)
                self.failed.pop(key, None)
                self.gone.discard(key)
                self.tail.append((offset, recheck_entry(record)))
            elif status == GONE:
                self.gone.add(key)
                self.failed.pop(key, None)
                self.done.discard(key)
            elif status == FAILED:
                self.failed[key] = record
                self.done.discard(key)
                self.gone.discard(key)
        elif (upto := records.durable_upto(record)) is not None:
            self.durable_upto = upto
            self.tail = [(o, r) for o, r in self.tail if o >= upto]
            self.spans = [(first, end, max(lo, upto)) for first, end, lo in self.spans if end > upto]
            for query, entries in self.checkpoints.items():
                trusted = [c for c in entries if c[0] < upto]
                self.checkpoints[query] = trusted[-1:] + [c for c in entries if c[0] >= upto]
        elif kind == CHECKPOINT and isinstance(record.get("query"), str):
            entries = self.checkpoints.setdefault(record["query"], [])
            entries.append((offset, record))
            if self.durable_upto is None:
                del entries[:-1]  # without group commit every record is taken as it is: keep the last
        elif kind == REF and self.refs is not None:
            key = key_of(record)
            if key is not None and isinstance(record.get("source"), str):
                self.refs.add((key, record["source"]))
        elif kind == HWM and isinstance(record.get("query"), str) and isinstance(record.get("created_at"), str):
            self.high_waters[record["query"]] = record["created_at"]

    def for_query(self, query: str) -> ResumeState:
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
