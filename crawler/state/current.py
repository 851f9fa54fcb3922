"""The images a mirror holds now: each image's last record, streamed from the manifest in two passes.

    for record in current_done(root / MANIFEST_NAME): ...     # export, verify

Memory is one offset per image (not its record), so millions stream in tens of MB. Only the bytes the
file had when reading began are read, so it runs beside a crawl that is still appending. A missing
manifest yields nothing; unreadable lines are skipped (as everywhere the log is read).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from crawler.keys import Key
from crawler.state.manifest import iter_records_at
from crawler.state.records import DONE, IMAGE, REF, Record, key_of, status_of


def current_done(path: Path, sources: dict[Key, set[str]] | None = None) -> Iterator[Record]:
    """Every image whose last record (as of now) is `done`, in manifest order.

    `sources`, when given, is filled with every model version that referenced each image (image and
    `ref` records both name one).
    """
    try:
        end = path.stat().st_size
    except FileNotFoundError:
        return
    latest: dict[Key, int] = {}  # key -> offset of its last record if that is done, else -1
    for offset, record in iter_records_at(path, end=end):
        kind = record["kind"]
        if kind != IMAGE and kind != REF:
            continue
        key = key_of(record)
        if key is None:
            continue
        if sources is not None and isinstance(record.get("source"), str):
            sources.setdefault(key, set()).add(record["source"])
        if kind == IMAGE:
            latest[key] = offset if status_of(record) == DONE else -1
    for offset, record in iter_records_at(path, end=end):
        if status_of(record) == DONE:
            key = key_of(record)
            if key is not None and latest.get(key) == offset:
                yield record
