"""`--format parquet`: one Parquet file of every column of `rows.COLUMNS`, written a row group at a time.

With `embed_images`, an `image` column holds each picture's bytes (and a file name) in the struct the
Hugging Face `Image` feature reads, and the file carries `datasets`' feature metadata, so
`load_dataset("parquet", data_files=...)` decodes it; videos get a null image. Rows are buffered up to
one row group (by rows, and by bytes once images are embedded). The writer holds each row group's
footer metadata (~15 KB: every column's offsets and statistics) until the file closes, and builds the
footer from it then: hence row groups of up to `EMBEDDED_ROWS` rows, not 100 (100-row groups of small
images made an export's peak grow ~0.9 KB per row), and statistics only for the columns a reader
filters on (`STATISTICS`; a prompt's or an image's min/max prunes nothing). That footer is the one
thing that grows with the rows (one `--embed-images` file of 100 GB of images holds ~25 MB of it;
`hf` shards its files at 500 MB). Files are written as `.part` and renamed when complete. Needs
pyarrow (the `export` extra); ExportError says so when it is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crawler.export import atomic, card
from crawler.export.errors import ExportError
from crawler.export.images import Images
from crawler.export.rows import typed
from crawler.state.records import Record
from crawler.store.layout import media_type

GROUP_BYTES = 64 * 2**20  # a row group of embedded images is flushed past this
# Embedded images: row groups of at most 64 MB (the Hub's viewer and `datasets` streaming read one at a
# time) and at most this many rows (small images: a few MB, not a few hundred KB, per group's metadata).
EMBEDDED_ROWS = 1000
STATISTICS = ("id", "bytes", "width", "height", "created_at", "post_id", "model_id", "model_version_id",
              "reactions", "seed", "steps")
_ROW_BYTES = 512  # what a row's metadata adds to a row group, about


def arrow_type(kind: str) -> Any:
    """The pyarrow type of a `rows.COLUMNS` (or `card.TIMESTAMP`) type name."""
    import pyarrow as pa
    if kind.startswith("list<"):
        return pa.list_(arrow_type(kind[len("list<"):-1]))
    if kind == card.TIMESTAMP:
        return pa.timestamp("us", tz="UTC")
    return {"int32": pa.int32(), "int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}[kind]


def schema(image: bool = False, video: bool = False, timestamps: bool = False) -> Any:
    """The arrow schema of an export; with `image`, led by the image struct and with `datasets` metadata."""
    import pyarrow as pa
    fields = [(name, arrow_type(kind)) for name, kind in card.column_types(timestamps)]
    if not image:
        return pa.schema(fields)
    fields.insert(0, (card.IMAGE, pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
    if video:
        fields.append((card.VIDEO_PATH, pa.string()))
    return pa.schema(fields, metadata=card.schema_metadata(image, video, timestamps))


def require_pyarrow() -> None:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ExportError("this format needs pyarrow: pip install 'civitai-mirror[export]'") from None


def is_video(record: Record) -> bool:
    return media_type(record.get("content_type")).startswith("video/")


def image_cell(images: Images, record: Record, data: dict[str, Any]) -> dict[str, Any] | None:
    """The `Image` feature's struct for a picture (bytes, file name); None for a video."""
    if is_video(record):
        return None
    rel = str(record["path"])
    return {"bytes": images.read(rel), "path": f"{data['key']}{Path(rel).suffix}"}


class ParquetFile:
    """One Parquet file written at `<target>.part`, a row group at a time; `close()` renames it into place."""

    def __init__(self, target: Path, schema: Any, row_group: int, group_bytes: int = GROUP_BYTES) -> None:
        import pyarrow.parquet as pq
        self.target = target
        self.part = atomic.part_of(target)
        self.schema = schema
        self.row_group = row_group
        self.group_bytes = group_bytes
        self.size = 0  # bytes added so far, about: what the file will weigh before compression
        self._rows: list[dict[str, Any]] = []
        self._buffered = 0
        self._writer = pq.ParquetWriter(self.part, schema, compression="zstd",
                                        write_statistics=[n for n in schema.names if n in STATISTICS])

    def add(self, row: dict[str, Any], size: int = 0) -> None:
        self._rows.append(row)
        self._buffered += size + _ROW_BYTES
        self.size += size + _ROW_BYTES
        if len(self._rows) >= self.row_group or self._buffered >= self.group_bytes:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.schema))
            self._rows, self._buffered = [], 0

    def close(self) -> int:
        """The file's size once in place."""
        self._flush()
        self._writer.close()
        atomic.publish(self.part, self.target)
        return self.target.stat().st_size

    def abort(self) -> None:
        self._writer.close()
        self.part.unlink(missing_ok=True)


class ParquetSink:
    """`--format parquet` (optionally `--embed-images`): one file, memory flat for any size."""

    def __init__(self, to: Path, row_group: int = 10_000, embed_images: bool = False) -> None:
        require_pyarrow()
        self.to = to
        self.embed_images = embed_images
        self.schema = schema(image=embed_images)
        self._file = ParquetFile(to, self.schema, min(row_group, EMBEDDED_ROWS) if embed_images else row_group)

    @property
    def part(self) -> Path:
        return self._file.part

    def write(self, images: Images, record: Record, data: dict[str, Any]) -> None:
        if self.embed_images:
            cell = image_cell(images, record, data)
            self._file.add({**typed(data), card.IMAGE: cell}, len(cell["bytes"]) if cell is not None else 0)
        else:
            self._file.add(typed(data))

    def close(self) -> None:
        self._file.close()

    def abort(self) -> None:
        self._file.abort()
