"""Tags of simulated images: `withTags=true` lists them on each item, `tags=ID,...` filters by them.

Deterministic from the image id (one to three of `TAGS`), so a test can predict them. A `tags`
filter keeps an image holding ANY of the ids asked for (CivitAI's exact semantics are not public).
"""

from __future__ import annotations

import zlib
from typing import Any

from crawler.simulator.items import Record

#: tag id -> name, a small fixed vocabulary (ids as CivitAI's are: arbitrary integers).
TAGS = {5133: "woman", 4: "anime", 3915: "landscape", 7084: "photorealistic", 111: "cat", 2435: "robot"}
_IDS = tuple(TAGS)


def tag_ids(record: Record) -> frozenset[int]:
    bits = zlib.crc32(f"tags:{record.item['id']}".encode())
    count = 1 + bits % 3
    return frozenset(_IDS[(bits >> (4 * i)) % len(_IDS)] for i in range(1, count + 1))


def tags_of(record: Record) -> list[dict[str, Any]]:
    """The item's `tags` field as `withTags=true` answers it."""
    return [{"id": i, "name": TAGS[i]} for i in sorted(tag_ids(record))]
