"""`--format hf`: a folder the Hugging Face `datasets` library opens as it is (and the Hub accepts).

    DIR/README.md                      the dataset card (YAML header: features, size, files, licence)
    DIR/data/train-00000.parquet ...   shards of about `shard_bytes` each, images embedded

`datasets.load_dataset(DIR)` gives an `image` column of the `Image` feature (decoded to a picture on
access), every column of `rows.COLUMNS` with its type (integers stay integers, with nulls;
`created_at` a UTC timestamp; `meta_json` the nested metadata as JSON text) and, with
`include_videos`, a `video_path` column (the file's path in the mirror; `image` is null for those rows).
Streams: one row group (at most ~64 MB, `parquet.EMBEDDED_ROWS` rows) and one shard's footer in memory.
Each shard is written as `.part` and renamed when complete; the card is written last, after shards of
an earlier export into DIR that this one did not rewrite are removed, so a complete folder always
describes exactly its own files.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from crawler.export import atomic, card
from crawler.export.images import Images
from crawler.export.parquet import EMBEDDED_ROWS, ParquetFile, image_cell, require_pyarrow, schema
from crawler.export.rows import typed
from crawler.state.records import Record

DATA_DIR = "data"
SHARD_BYTES = 500 * 2**20  # the size `datasets.push_to_hub` shards at; the Hub serves such files well
_PATTERN = "train-*.parquet"


class HfSink:
    def __init__(self, to: Path, include_videos: bool = False, shard_bytes: int | None = None,
                 row_group: int = EMBEDDED_ROWS) -> None:
        require_pyarrow()
        self.to = to
        self.data = to / DATA_DIR
        self.data.mkdir(parents=True, exist_ok=True)
        self.include_videos = include_videos
        self.shard_bytes = shard_bytes or SHARD_BYTES
        self.row_group = row_group
        self.schema = schema(image=True, video=include_videos, timestamps=True)
        self.shards: list[Path] = []
        self.rows = 0
        self.data_bytes = 0
        self._file: ParquetFile | None = None

    def write(self, images: Images, record: Record, data: dict[str, Any]) -> None:
        if self._file is None:
            target = self.data / f"train-{len(self.shards):05d}.parquet"
            self._file = ParquetFile(target, self.schema, self.row_group)
        cell = image_cell(images, record, data)
        row = {**typed(data), "image": cell, "created_at": _timestamp(data["created_at"])}
        if self.include_videos:
            row[card.VIDEO_PATH] = None if cell is not None else data["path"]
        self._file.add(row, len(cell["bytes"]) if cell is not None else 0)
        self.rows += 1
        if self._file.size >= self.shard_bytes:
            self._seal()

    def _seal(self) -> None:
        if self._file is not None:
            self.data_bytes += self._file.close()
            self.shards.append(self._file.target)
            self._file = None

    def close(self) -> None:
        self._seal()
        written = set(self.shards)
        for stale in self.data.glob(_PATTERN):
            if stale not in written:
                stale.unlink()
        files = f"{DATA_DIR}/{_PATTERN}"
        atomic.write_bytes(self.to / "README.md", card.card(self.rows, self.data_bytes, files,
                                                            self.include_videos).encode())

    def abort(self) -> None:
        if self._file is not None:
            self._file.abort()
            self._file = None


def _timestamp(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))
