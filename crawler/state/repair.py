"""`verify --repair`: done images whose file is missing or no longer matches are marked for refetch.

    marked = mark_for_refetch(root, problems)   # the caller holds the mirror's lock

Each is given a `failed` record (reason `repair`, the item and URL of its done record), so the mirror's
state no longer counts it done: the next crawl queues it with the other failures (whatever its query),
and `follow` on its next pass. The record is dated 0, so a follower's retry schedule finds it due at
once. Nothing is deleted; a file that is there but wrong is replaced by the refetch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from crawler.keys import Key
from crawler.state import records
from crawler.state.current import current_done
from crawler.state.manifest import MANIFEST_NAME, ManifestWriter
from crawler.state.report import Problem

REASON = "repair"


@dataclass(frozen=True, slots=True)
class _Listed:
    """The image a done record is about, as `records.failed` wants it."""

    id: int | None
    uuid: str | None
    url: str
    source: str | None


def mark_for_refetch(root: Path, problems: Iterable[Problem]) -> int:
    """Append a refetch mark for each problem's image; returns how many were marked."""
    what = {p.key: p.what for p in problems}
    if not what:
        return 0
    path = root / MANIFEST_NAME
    found: dict[Key, records.Record] = {}
    for record in current_done(path):
        key = records.key_of(record)
        if key in what and isinstance(record.get("url"), str):
            found[key] = record
    writer = ManifestWriter(path)
    try:
        for key, record in found.items():
            ident, uuid, source = record.get("id"), record.get("uuid"), record.get("source")
            listed = _Listed(ident if isinstance(ident, int) else None, uuid if isinstance(uuid, str) else None,
                             str(record["url"]), source if isinstance(source, str) else None)
            item = record.get("item")
            why = f"verify found the file {what[key]}: refetch"
            writer.append(records.refetch(listed, item if isinstance(item, dict) else {}, REASON, why))
        writer.flush()
    finally:
        writer.close()
    return len(found)
