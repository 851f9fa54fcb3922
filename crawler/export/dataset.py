"""`civitai-mirror export`: the mirror as a dataset (JSON lines, Parquet, webdataset tar shards).

Streams the manifest twice (once to find each image's last record, once to emit the done ones), up to
the size it had when the export started, so it runs beside a crawl that is still appending. Output
appears only complete: each file is written as `.part` and renamed.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

import orjson

from crawler import normalise as N
from crawler.state.manifest import MANIFEST_NAME, iter_records_at, key_of
from crawler.keys import Key

FORMATS = ("jsonl", "parquet", "webdataset", "captions")


class ExportError(RuntimeError):
    """One readable line: what cannot be exported and why."""


def done_records(root: Path, sources: dict[Key, set[str]] | None = None) -> Iterator[dict[str, Any]]:
    """Every image whose latest record (as of now) is `done`, in manifest order.

    `sources`, when given, is filled with every model version that referenced each model image.
    """
    path = root / MANIFEST_NAME
    try:
        limit = path.stat().st_size  # a crawl may append while we read: export what was complete now
    except FileNotFoundError:
        raise ExportError(f"{root} has no {MANIFEST_NAME}: not a mirror (yet)") from None
    latest: dict[Key, int] = {}
    for offset, record in _records_before(path, limit):
        kind = record["kind"]
        if kind == "image" or kind == "ref":
            key = key_of(record)
            if key is None:
                continue
            if sources is not None and isinstance(record.get("source"), str):
                sources.setdefault(key, set()).add(record["source"])
            if kind == "image":
                latest[key] = offset if record.get("status") == "done" else -1
    for offset, record in _records_before(path, limit):
        if record["kind"] == "image" and record.get("status") == "done":
            key = key_of(record)
            if key is not None and latest.get(key) == offset:
                yield record


def _records_before(path: Path, limit: int) -> Iterator[tuple[int, dict[str, Any]]]:
    for offset, record in iter_records_at(path):
        if offset >= limit:
            return
        yield offset, record


def _height(item: dict[str, Any], width: int | None) -> int | None:
    full_w, full_h = N.integer(item, "width"), N.integer(item, "height")
    if not full_w or not full_h:
        return full_h
    if width is None or width >= full_w:
        return full_h
    return round(full_h * width / full_w)


def _model_ids(label: Any) -> tuple[int | None, int | None]:
    """"model:M/version:V" -> (M, V)."""
    if not isinstance(label, str) or not label.startswith("model:"):
        return None, None
    model, _, version = label[len("model:"):].partition("/version:")
    return (int(model) if model.isdigit() else None), (int(version) if version.isdigit() else None)


def row(record: dict[str, Any], sources: set[str] | None = None) -> dict[str, Any]:
    """The flat, typed view of one done image that every format shares."""
    item = record.get("item") if isinstance(record.get("item"), dict) else {}
    stats = item.get("stats") if isinstance(item.get("stats"), dict) else {}
    fields = N.meta_fields(item)
    width = record.get("width") if isinstance(record.get("width"), int) else N.integer(item, "width")
    raw_level = item.get("nsfwLevel")
    when = N.created_at(item)
    meta = N.meta(item)
    return {
        "id": record.get("id"),
        "key": str(key_of(record)),
        "path": record.get("path"),
        "sha256": record.get("sha256"),
        "bytes": record.get("bytes"),
        "content_type": record.get("content_type"),
        "width": width,
        "height": _height(item, width),
        "type": N.text(item, "type"),
        "nsfw_level": N.nsfw_name(item),
        "nsfw_level_raw": None if raw_level is None else str(raw_level),
        "created_at": when.isoformat().replace("+00:00", "Z") if when else None,
        "username": N.text(item, "username"),
        "post_id": N.integer(item, "postId"),
        "base_model": N.text(item, "baseModel"),
        "model_version_ids": N.int_list(item, "modelVersionIds"),
        "model_id": _model_ids(record.get("source"))[0],
        "model_version_id": _model_ids(record.get("source"))[1],
        "sources": sorted((sources or set()) | {record["source"] if isinstance(record.get("source"), str) else "images"}),
        "reactions": N.reactions(item),
        "like_count": N._int(stats.get("likeCount")),
        "heart_count": N._int(stats.get("heartCount")),
        "laugh_count": N._int(stats.get("laughCount")),
        "cry_count": N._int(stats.get("cryCount")),
        "comment_count": N._int(stats.get("commentCount")),
        "prompt": _str(fields["prompt"]),
        "negative_prompt": _str(fields["negative_prompt"]),
        "seed": N._int(fields["seed"]),
        "steps": N._int(fields["steps"]),
        "sampler": _str(fields["sampler"]),
        "cfg_scale": _float(fields["cfg_scale"]),
        "clip_skip": N._int(fields["clip_skip"]),
        "url": record.get("url"),
        "meta_json": orjson.dumps(meta).decode() if meta is not None else None,
    }


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else (None if value is None else str(value))


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value) if isinstance(value, str) else None
    except ValueError:
        return None


class Sink(Protocol):
    def write(self, root: Any, record: dict[str, Any], data: dict[str, Any]) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class JsonlSink:
    def __init__(self, to: Path) -> None:
        self.to = to
        self.part = to.with_name(to.name + ".part")
        self._f = open(self.part, "wb")

    def write(self, root: Any, record: dict[str, Any], data: dict[str, Any]) -> None:
        self._f.write(orjson.dumps(data) + b"\n")

    def close(self) -> None:
        self._f.close()
        os.replace(self.part, self.to)

    def abort(self) -> None:
        self._f.close()
        self.part.unlink(missing_ok=True)


def _parquet_schema():  # type: ignore[no-untyped-def]
    import pyarrow as pa
    i64, i32, s, f64 = pa.int64(), pa.int32(), pa.string(), pa.float64()
    return pa.schema([
        ("id", i64), ("key", s), ("path", s), ("sha256", s), ("bytes", i64), ("content_type", s), ("width", i32),
        ("height", i32), ("type", s), ("nsfw_level", s), ("nsfw_level_raw", s), ("created_at", s), ("username", s),
        ("post_id", i64), ("base_model", s), ("model_version_ids", pa.list_(i64)), ("model_id", i64),
        ("model_version_id", i64), ("sources", pa.list_(s)), ("reactions", i64), ("like_count", i64), ("heart_count", i64), ("laugh_count", i64),
        ("cry_count", i64), ("comment_count", i64), ("prompt", s), ("negative_prompt", s), ("seed", i64), ("steps", i32),
        ("sampler", s), ("cfg_scale", f64), ("clip_skip", i32), ("url", s), ("meta_json", s),
    ])


class ParquetSink:
    """Rows are buffered and written one row group at a time, so memory stays flat for any size."""

    def __init__(self, to: Path, row_group: int = 10_000) -> None:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ExportError("the parquet format needs pyarrow: pip install 'civitai-mirror[export]'") from None
        self.to = to
        self.part = to.with_name(to.name + ".part")
        self.schema = _parquet_schema()
        self.row_group = row_group
        self._rows: list[dict[str, Any]] = []
        self._writer = pq.ParquetWriter(self.part, self.schema, compression="zstd")

    def write(self, root: Any, record: dict[str, Any], data: dict[str, Any]) -> None:
        seed = data["seed"]
        if seed is not None and not -(2 ** 63) <= seed < 2 ** 63:
            data = {**data, "seed": None}  # seeds past int64 exist in the wild; meta_json keeps them
        self._rows.append(data)
        if len(self._rows) >= self.row_group:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.schema))
            self._rows = []

    def close(self) -> None:
        self._flush()
        self._writer.close()
        os.replace(self.part, self.to)

    def abort(self) -> None:
        self._writer.close()
        self.part.unlink(missing_ok=True)


class WebDatasetSink:
    """Tar shards of `shard_size` samples: `{key}.{jpg|png|...}` plus `{key}.json`, as img2dataset writes."""

    def __init__(self, to: Path, shard_size: int = 1000) -> None:
        to.mkdir(parents=True, exist_ok=True)
        self.to = to
        self.shard_size = shard_size
        self.shards = 0
        self._count = 0
        self._tar: tarfile.TarFile | None = None
        self._part: Path | None = None

    def _open(self) -> tarfile.TarFile:
        if self._tar is None:
            self._part = self.to / f"{self.shards:05d}.tar.part"
            self._tar = tarfile.open(self._part, "w", format=tarfile.USTAR_FORMAT)
        return self._tar

    def write(self, root: Any, record: dict[str, Any], data: dict[str, Any]) -> None:
        tar = self._open()
        ext = Path(str(record["path"])).suffix.lstrip(".")
        ext = {"jpeg": "jpg"}.get(ext, ext)
        local = root.local(record["path"])
        if local is not None:
            tar.add(local, arcname=f"{data['key']}.{ext}", recursive=False)
        else:
            image = root.read(record["path"])
            info = tarfile.TarInfo(f"{data['key']}.{ext}")
            info.size = len(image)
            tar.addfile(info, io.BytesIO(image))
        body = orjson.dumps(data)
        info = tarfile.TarInfo(f"{data['key']}.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
        self._count += 1
        if self._count >= self.shard_size:
            self._seal()

    def _seal(self) -> None:
        if self._tar is not None and self._part is not None:
            self._tar.close()
            os.replace(self._part, self._part.with_suffix(""))
            self.shards += 1
            self._tar, self._part, self._count = None, None, 0

    def close(self) -> None:
        self._seal()

    def abort(self) -> None:
        if self._tar is not None and self._part is not None:
            self._tar.close()
            self._part.unlink(missing_ok=True)


class CaptionsSink:
    """The layout LoRA/fine-tuning tools read (kohya-ss style): `{key}.{ext}` beside `{key}.txt`.

    Images are hard-linked when the folder is on the mirror's filesystem (no copy, no extra space;
    the mirror's files are never opened for writing), copied otherwise. Images without the caption
    field are left out and counted.
    """

    def __init__(self, to: Path, field: str = "prompt") -> None:
        to.mkdir(parents=True, exist_ok=True)
        self.to = to
        self.field = field
        self.linked = 0
        self.copied = 0
        self.uncaptioned = 0

    def write(self, root: Any, record: dict[str, Any], data: dict[str, Any]) -> None:
        caption = data.get(self.field)
        if caption is None or (isinstance(caption, str) and not caption.strip()):
            self.uncaptioned += 1
            return
        source = root.local(record["path"])
        target = self.to / f"{data['key']}{Path(record['path']).suffix}"
        if not target.exists():
            part = target.with_name(target.name + ".part")
            try:
                if source is None:
                    raise OSError("in an object store: copied")
                os.link(source, target)
                self.linked += 1
            except OSError:
                if source is not None:
                    shutil.copyfile(source, part)
                else:
                    part.write_bytes(root.read(record["path"]))
                os.replace(part, target)
                self.copied += 1
        text = self.to / f"{data['key']}.txt"
        part = text.with_name(text.name + ".part")
        part.write_text(str(caption).strip() + "\n", encoding="utf-8")
        os.replace(part, text)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class ExportResult:
    rows: int
    skipped_missing: int
    uncaptioned: int = 0
    linked: int = 0
    copied: int = 0


_PREFETCH = 64  # images read together from an object store


def _prefetched(records: Iterator[dict[str, Any]], images: Any) -> Iterator[dict[str, Any]]:
    """The records, with the images of each next group of them fetched together first."""
    group: list[dict[str, Any]] = []
    for record in records:
        group.append(record)
        if len(group) == _PREFETCH:
            images.prefetch([str(r.get("path") or "") for r in group])
            yield from group
            group = []
    if group:
        images.prefetch([str(r.get("path") or "") for r in group])
        yield from group


class LocalImages:
    """The mirror's images on disk: read in place (tar.add, hard links)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def is_file(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def local(self, rel: str) -> Path | None:
        return self.root / rel

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def prefetch(self, rels: list[str]) -> None:
        pass  # read in place


class RemoteImages:
    """The mirror's images in an object store, read through fsspec (synchronously: export is a batch job)."""

    def __init__(self, url: str, storage_options: dict[str, Any]) -> None:
        import fsspec
        self.url = url.rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.url, **storage_options)
        self._fetched: dict[str, bytes] | None = None

    def prefetch(self, rels: list[str]) -> None:
        """Fetch the next images together: one GET at a time would bound an export at ~30 per second."""
        paths = {f"{self.base}/{rel}": rel for rel in rels}
        got = self.fs.cat(list(paths), on_error="omit")
        self._fetched = {paths[p]: data for p, data in got.items() if p in paths}

    def is_file(self, rel: str) -> bool:
        if self._fetched is not None:
            return rel in self._fetched
        return bool(self.fs.isfile(f"{self.base}/{rel}"))

    def local(self, rel: str) -> Path | None:
        return None

    def read(self, rel: str) -> bytes:
        if self._fetched is not None and rel in self._fetched:
            return self._fetched.pop(rel)
        return self.fs.cat_file(f"{self.base}/{rel}")


def export(root: Path, fmt: str, to: Path, shard_size: int = 1000, caption_field: str = "prompt",
           images: LocalImages | RemoteImages | None = None) -> ExportResult:
    """Export the mirror whose manifest is in `root`; images are read from `images` (default: `root`)."""
    source = images if images is not None else LocalImages(root)
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; one of: {', '.join(FORMATS)}")
    if fmt != "webdataset" and to.is_dir():
        raise ExportError(f"--to {to} is a directory; give a file path")
    if fmt in ("webdataset", "captions") and to.exists() and not to.is_dir():
        raise ExportError(f"--to {to} exists and is not a directory")
    if fmt == "captions" and caption_field not in _parquet_schema().names:
        raise ExportError(f"--caption-field {caption_field!r} is not an exported field; e.g. prompt, negative_prompt, username")
    sources: dict[Key, set[str]] = {}
    records = done_records(root, sources)
    sink: Sink
    if fmt == "webdataset":
        sink = WebDatasetSink(to, shard_size)
    elif fmt == "captions":
        sink = CaptionsSink(to, caption_field)
    else:
        sink = {"jsonl": JsonlSink, "parquet": ParquetSink}[fmt](to)
    rows = missing = 0
    reads_images = fmt in ("webdataset", "captions")
    try:
        for record in _prefetched(records, source) if reads_images else records:
            rel = Path(str(record.get("path") or ""))
            if not rel.parts or rel.is_absolute() or ".." in rel.parts:
                missing += 1  # a record we did not write; never read outside the mirror
                continue
            if fmt in ("webdataset", "captions") and not source.is_file(str(rel)):
                missing += 1  # removed since it was recorded; `verify` names such files
                continue
            sink.write(source, record, row(record, sources.get(key_of(record))))  # type: ignore[arg-type]
            rows += 1
    except BaseException:
        sink.abort()
        raise
    sink.close()
    if isinstance(sink, CaptionsSink):
        return ExportResult(rows - sink.uncaptioned, missing, sink.uncaptioned, sink.linked, sink.copied)
    return ExportResult(rows, missing)
