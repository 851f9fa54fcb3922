"""`--format jsonl`: one JSON object per done image (the columns of `rows.COLUMNS`), one per line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from crawler.export import atomic
from crawler.export.images import Images
from crawler.state.records import Record


class JsonlSink:
    def __init__(self, to: Path) -> None:
        self.to = to
        self.part = atomic.part_of(to)
        self._f = open(self.part, "wb")

    def write(self, images: Images, record: Record, data: dict[str, Any]) -> None:
        self._f.write(orjson.dumps(data) + b"\n")

    def close(self) -> None:
        self._f.close()
        atomic.publish(self.part, self.to)

    def abort(self) -> None:
        self._f.close()
        self.part.unlink(missing_ok=True)
