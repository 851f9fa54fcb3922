"""What `crawl --dry-run` counted, kept in the mirror so that a later crawl of the same query shows an ETA.

    dry_counts.save(root, query, DryCount(...))       # the dry run, once it walked the whole listing
    count = dry_counts.load(root, query)              # the crawl: None when this query was never counted

One small JSON file, `dry-run-counts.json` beside the manifest: an object of query key (the manifest's
`query_identity`) -> counts. Written as a whole each time (`state/files.write_durable`), so a reader sees
the old file or the new one, never half of one; other queries' entries are kept. Two dry runs ending at
the same moment may lose one's entry (no lock: it is a hint for the progress line, not a record). A
file that cannot be read or parsed counts as empty; a failed save is the caller's to report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from crawler.state.files import write_durable

NAME = "dry-run-counts.json"


@dataclass(frozen=True, slots=True)
class DryCount:
    """One query's tally: `matched` listed and wanted, `already_mirrored` of them, `to_fetch` the rest.

    `mirrored` is the whole mirror's done count then, so a crawl can tell how much was mirrored since;
    `from_top` says the walk started at the top of the feed (not at a checkpoint), so `matched` is
    the whole query."""

    matched: int
    already_mirrored: int
    to_fetch: int
    mirrored: int
    from_top: bool
    counted_at: str  # ISO 8601, UTC


def path_of(root: Path) -> Path:
    return root / NAME


def _read(root: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path_of(root).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def load(root: Path, query: str) -> DryCount | None:
    entry = _read(root).get(query)
    if not isinstance(entry, dict):
        return None
    try:
        count = DryCount(**entry)
    except TypeError:  # written by another version: ignored, as a missing one
        return None
    numbers = (count.matched, count.already_mirrored, count.to_fetch, count.mirrored)
    return count if all(type(n) is int and n >= 0 for n in numbers) else None


def save(root: Path, query: str, count: DryCount) -> None:
    """Merge `count` into the file under `query`; raises OSError when the folder cannot be written."""
    root.mkdir(parents=True, exist_ok=True)
    entries = _read(root)
    entries[query] = asdict(count)
    write_durable(path_of(root), orjson.dumps(entries, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
