"""`civitai-mirror export`: the mirror as a dataset (JSON lines, Parquet, webdataset, captions, Hugging Face).

    result = export(root, "parquet", Path("d.parquet"))              # images read from `root`
    result = export(root, "hf", Path("ds"))                          # then datasets.load_dataset("ds")

Streams the manifest twice (`rows.done_records`: each image's last record, then the done ones) up to
the size it had when the export started, so it runs beside a crawl that is still appending. Output
appears only complete (`atomic`: `.part`, then renamed). Images in the mirror's exclusion list
(`state/exclusions.py`) are left out. What cannot be exported raises `ExportError` (one line).
One module per format: jsonl.py, parquet.py, webdataset.py, captions.py, hf.py (card.py: its features
and dataset card); rows.py holds the columns. Videos are left out of `hf` unless `include_videos`.
"""

from __future__ import annotations

import errno
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from crawler.export import atomic
from crawler.export.captions import CaptionsSink
from crawler.export.errors import ExportError
from crawler.export.hf import HfSink
from crawler.export.images import Images, LocalImages, RemoteImages, prefetched
from crawler.export.jsonl import JsonlSink
from crawler.export.parquet import ParquetSink, is_video
from crawler.export.rows import NAMES, done_records, is_inside, row
from crawler.export.webdataset import WebDatasetSink
from crawler.keys import Key
from crawler.state import exclusions
from crawler.state.records import Record, key_of

# The CLI reads these names from here: `export_mod.RemoteImages(...)`, `export_mod.ExportError`.
__all__ = ["FORMATS", "ExportError", "ExportOptions", "ExportResult", "LocalImages", "RemoteImages", "export"]

FORMATS = ("jsonl", "parquet", "webdataset", "captions", "hf")
_FOLDERS = ("webdataset", "captions", "hf")  # --to is a directory
# A captions folder's own files: `{key}.{ext}` and `{key}.txt` (key: an image id or uuid), and their `.part`s.
_OURS = re.compile(r"(\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\.\w+(\.part)?")
_WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT, errno.EPERM, errno.EFBIG})


class Sink(Protocol):
    """One export format: `write` each row (with its record and where its image is read), then `close`
    (the output appears) or `abort` (nothing appears under a final name)."""

    def write(self, images: Images, record: Record, data: dict[str, Any]) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """What `--embed-images` and `--include-videos` ask (the CLI builds it from its flags)."""

    embed_images: bool = False  # parquet: the image bytes in the file (hf always embeds them)
    include_videos: bool = False  # hf: video rows too, with a `video_path` column and no image
    verify: bool = False  # re-hash each shipped image against its manifest sha256 (the size is always checked)


@dataclass(frozen=True, slots=True)
class ExportResult:
    rows: int
    skipped_missing: int
    uncaptioned: int = 0
    linked: int = 0
    copied: int = 0
    excluded: int = 0
    videos_left_out: int = 0
    pattern: str | None = None  # webdataset: the shards' brace pattern, to paste into WebDataset(...)
    changed: int = 0  # left out: the file's bytes no longer match the manifest (size, or sha256 with verify)


def _check(fmt: str, to: Path, caption_field: str, options: ExportOptions) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; one of: {', '.join(FORMATS)}")
    if fmt not in _FOLDERS and to.is_dir():
        raise ExportError(f"--to {to} is a directory; give a file path")
    if fmt in _FOLDERS and to.exists() and not to.is_dir():
        raise ExportError(f"--to {to} exists and is not a directory")
    if fmt in ("captions", "webdataset") and caption_field not in NAMES:
        raise ExportError(f"--caption-field {caption_field!r} is not an exported field; e.g. prompt, negative_prompt, username")
    if options.embed_images and fmt != "parquet":
        raise ExportError("--embed-images is for --format parquet (hf always embeds the images)")
    if options.verify and fmt not in _FOLDERS and not options.embed_images:
        raise ExportError("--verify checks the image bytes an export ships: for webdataset, captions, hf or parquet "
                          "--embed-images (`civitai-mirror verify` checks the whole mirror)")
    if options.include_videos and fmt != "hf":
        raise ExportError("--include-videos is for --format hf (the other formats always include videos)")


def _prepare(fmt: str, to: Path) -> None:
    """Create the folders `to` needs, and clear a killed export's `.part` files; one ExportError line when
    the folder cannot be made, or when a captions folder holds files that are not ours."""
    folder = to if fmt in _FOLDERS else to.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"--to {to}: cannot create the folder {folder}: {_why(e)}") from None
    if fmt == "captions":
        strangers = sorted(p.name for p in folder.iterdir() if not _OURS.fullmatch(p.name))
        if strangers:
            more = f" and {len(strangers) - 3} more" if len(strangers) > 3 else ""
            raise ExportError(f"--to {to} holds files that are not a captions export ({', '.join(strangers[:3])}"
                              f"{more}); give an empty or new folder")
    if fmt in _FOLDERS:
        atomic.remove_parts(folder)
        atomic.remove_parts(folder / "data")  # hf's shards


def _why(e: OSError) -> str:
    """An OS error in words, without Python's `[Errno N]`."""
    if isinstance(e, (NotADirectoryError, FileExistsError)):
        return "a part of the path is a file, not a folder"
    return (e.strerror or type(e).__name__).lower()


def _sink(fmt: str, to: Path, shard_size: int, caption_field: str, options: ExportOptions) -> Sink:
    if fmt == "webdataset":
        return WebDatasetSink(to, shard_size, caption_field)
    if fmt == "captions":
        return CaptionsSink(to, caption_field)
    if fmt == "parquet":
        return ParquetSink(to, embed_images=options.embed_images)
    if fmt == "hf":
        return HfSink(to, options.include_videos)
    return JsonlSink(to)


def export(root: Path, fmt: str, to: Path, shard_size: int = 1000, caption_field: str = "prompt",
           images: LocalImages | RemoteImages | None = None, excluded: frozenset[str] | None = None,
           options: ExportOptions = ExportOptions()) -> ExportResult:
    """Export the mirror whose manifest is in `root`; images are read from `images` (default: `root`);
    `excluded` keys are left out (default: the mirror's exclusion list)."""
    source: Images = images if images is not None else LocalImages(root)
    _check(fmt, to, caption_field, options)
    skip = exclusions.load(root) if excluded is None else excluded
    sources: dict[Key, set[str]] = {}
    records = done_records(root, sources)
    _prepare(fmt, to)
    try:
        sink = _sink(fmt, to, shard_size, caption_field, options)
    except OSError as e:
        raise ExportError(f"--to {to}: cannot write there: {_why(e)}") from None
    rows = missing = left_out = videos = changed = 0
    reads_images = fmt in _FOLDERS or options.embed_images
    skip_videos = fmt == "hf" and not options.include_videos
    try:
        for record in prefetched(records, source) if reads_images else records:
            key = key_of(record)
            if skip and str(key) in skip:
                left_out += 1
                continue
            if skip_videos and is_video(record):
                videos += 1
                continue
            rel = str(record.get("path") or "")
            if not is_inside(rel):
                missing += 1  # a record we did not write; never read outside the mirror
                continue
            if reads_images and not source.is_file(rel):
                missing += 1  # removed since it was recorded; `verify` names such files
                continue
            if reads_images and not _intact(source, record, rel, options.verify):
                changed += 1  # never ship bytes the manifest does not vouch for; `verify --repair` refetches
                continue
            sink.write(source, record, row(record, sources.get(key) if key is not None else None))
            rows += 1
    except OSError as e:
        sink.abort()
        if e.errno in _WRITE_ERRORS:  # the output's disk, not a mirror file: one line, no traceback
            raise ExportError(f"--to {to}: cannot write there: {_why(e)}") from None
        raise
    except BaseException:
        sink.abort()
        raise
    try:
        sink.close()
    except BaseException:
        sink.abort()
        raise
    if isinstance(sink, CaptionsSink):
        return ExportResult(rows - sink.uncaptioned, missing, sink.uncaptioned, sink.linked, sink.copied, left_out,
                            changed=changed)
    pattern = sink.pattern if isinstance(sink, WebDatasetSink) else None
    return ExportResult(rows, missing, excluded=left_out, videos_left_out=videos, pattern=pattern, changed=changed)


def _intact(source: Images, record: Record, rel: str, verify: bool) -> bool:
    """The file still holds what the manifest recorded: its size (a stat, cheap), and its sha256 with `verify`."""
    local = source.local(rel)
    size = record.get("bytes")
    if local is not None and isinstance(size, int) and local.stat().st_size != size:
        return False
    if not verify:
        return True
    digest = hashlib.sha256()
    if local is not None:
        with open(local, "rb") as f:
            digest = hashlib.file_digest(f, "sha256")
    else:
        digest.update(source.read(rel))
    return digest.hexdigest() == record.get("sha256")
