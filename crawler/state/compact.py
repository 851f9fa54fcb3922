"""`civitai-mirror compact`: rewrite the manifest as one record per image plus the latest bookkeeping.

A long-lived mirror's log grows with every retry, checkpoint and pass. Compaction keeps each image's
last record, each query's last checkpoint, high-water mark and run end, in their original order, and
swaps the file atomically (write, fsync, rename). The file it replaces is kept as `manifest.jsonl.prev`
(one generation), so the user's data is never rewritten without a copy. Safe against kill -9 at any
point: before the rename the old file is untouched, after it the new one is complete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from crawler.keys import Key
from crawler.state import records
from crawler.state.manifest import MANIFEST_NAME, iter_records_at
from crawler.state.records import CHECKPOINT, HWM, IMAGE, PROOF, RUN, key_of

PREVIOUS = MANIFEST_NAME + ".prev"
WORKING = MANIFEST_NAME + ".compacting"


@dataclass(frozen=True, slots=True)
class CompactResult:
    records_before: int
    records_after: int
    bytes_before: int
    bytes_after: int


def _keep(path: Path) -> tuple[set[int], int | None, int]:
    """Offsets of the records to keep, the offset of the last durable marker, and the record count."""
    images: dict[Key, int] = {}
    bookkeeping: dict[tuple[str, Any], int] = {}
    durable_upto: int | None = None
    count = 0
    for offset, record in iter_records_at(path):
        count += 1
        kind = record["kind"]
        if kind == IMAGE:
            key = key_of(record)
            if key is not None:
                images[key] = offset
        elif kind in (CHECKPOINT, HWM):
            bookkeeping[(kind, record.get("query"))] = offset
        elif kind == PROOF:  # the depth and gaps `status` shows with the run end that follows it
            bookkeeping[(PROOF, None)] = offset
        elif records.is_run_end(record):
            bookkeeping[(RUN, record.get("query"))] = offset
        elif (upto := records.durable_upto(record)) is not None:
            durable_upto = upto
    return set(images.values()) | set(bookkeeping.values()), durable_upto, count


def compact(root: Path) -> CompactResult:
    """The caller holds the mirror's lock (no crawl may append meanwhile)."""
    path = root / MANIFEST_NAME
    working = root / WORKING
    working.unlink(missing_ok=True)  # left by a compaction killed before its rename
    before = path.stat().st_size
    keep, durable_upto, count = _keep(path)
    kept = 0
    marked = durable_upto is None
    with open(working, "wb") as out:
        for offset, record in iter_records_at(path):
            if durable_upto is not None and not marked and offset >= durable_upto:
                # Records that were past the last group commit stay past it: they are still re-checked.
                out.write(orjson.dumps(records.durable(out.tell(), 0, True, stamped=False)) + b"\n")
                marked = True
            if offset in keep:
                out.write(orjson.dumps(record) + b"\n")
                kept += 1
        if not marked:
            out.write(orjson.dumps(records.durable(out.tell(), 0, True, stamped=False)) + b"\n")
        out.flush()
        os.fsync(out.fileno())
    previous = root / PREVIOUS
    previous.unlink(missing_ok=True)
    os.link(path, previous)  # the old generation survives the swap under another name
    os.replace(working, path)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return CompactResult(count, kept, before, path.stat().st_size)


def worth_compacting(root: Path, images: int, threshold_bytes: int) -> bool:
    """Past the size threshold and at least half of the log is superseded records."""
    try:
        size = (root / MANIFEST_NAME).stat().st_size
    except FileNotFoundError:
        return False
    if size < threshold_bytes:
        return False
    average = 2048  # a done record with its item is ~1-2 KB
    return size > 2 * max(images, 1) * average
