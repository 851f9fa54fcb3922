"""Which images an export holds, and the flat typed row of each that every format shares.

    for record in done_records(root, sources): data = row(record, sources.get(key_of(record)))

`COLUMNS` names every column and its type once; the Parquet, Hugging Face and webdataset writers
derive their schemas from it. Rows are built from the manifest alone (the raw API item of each done
record), never from the image files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from crawler import normalise as N
from crawler.export.errors import ExportError
from crawler.keys import Key
from crawler.state.current import current_done
from crawler.state.manifest import MANIFEST_NAME
from crawler.state.records import Record, key_of

# (name, type): int32/int64/float64/string, "list<int64>"/"list<string>"; every column may be null.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "int64"), ("key", "string"), ("path", "string"), ("sha256", "string"), ("bytes", "int64"),
    ("content_type", "string"), ("width", "int32"), ("height", "int32"), ("type", "string"),
    ("nsfw_level", "string"), ("nsfw_level_raw", "string"), ("created_at", "string"), ("username", "string"),
    ("post_id", "int64"), ("base_model", "string"), ("model_version_ids", "list<int64>"), ("model_id", "int64"),
    ("model_version_id", "int64"), ("sources", "list<string>"), ("reactions", "int64"), ("like_count", "int64"),
    ("heart_count", "int64"), ("laugh_count", "int64"), ("cry_count", "int64"), ("comment_count", "int64"),
    ("prompt", "string"), ("negative_prompt", "string"), ("seed", "int64"), ("steps", "int32"),
    ("sampler", "string"), ("cfg_scale", "float64"), ("clip_skip", "int32"), ("url", "string"),
    ("meta_json", "string"), ("tags", "list<string>"),
)
NAMES = tuple(name for name, _ in COLUMNS)
_INT64 = 2 ** 63


def done_records(root: Path, sources: dict[Key, set[str]] | None = None) -> Iterator[Record]:
    """Every image whose latest record (as of now) is `done`, in manifest order; ExportError if `root`
    has no manifest. `sources`, when given, is filled with every model version that referenced each image."""
    if not (root / MANIFEST_NAME).is_file():
        raise ExportError(f"{root} has no {MANIFEST_NAME}: not a mirror (yet)")
    return current_done(root / MANIFEST_NAME, sources)


def is_inside(rel: str) -> bool:
    """A recorded path that stays inside the mirror (a record we did not write may name any path)."""
    path = Path(rel)
    return bool(path.parts) and not path.is_absolute() and ".." not in path.parts


def row(record: Record, sources: set[str] | None = None) -> dict[str, Any]:
    """The flat, typed view of one done image that every format shares (keys in `NAMES` order)."""
    item: dict[str, Any] = record["item"] if isinstance(record.get("item"), dict) else {}
    stats: dict[str, Any] = item["stats"] if isinstance(item.get("stats"), dict) else {}
    fields = N.meta_fields(item)
    width = record.get("width") if isinstance(record.get("width"), int) else N.integer(item, "width")
    raw_level = item.get("nsfwLevel")
    when = N.created_at(item)
    meta = N.meta(item)
    model_id, version_id = _model_ids(record.get("source"))
    seed = N._int(fields["seed"])
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
        "username": N.username(item),
        "post_id": N.integer(item, "postId"),
        "base_model": N.text(item, "baseModel"),
        "model_version_ids": N.int_list(item, "modelVersionIds"),
        "model_id": model_id,
        "model_version_id": version_id,
        "sources": sorted((sources or set()) | {record["source"] if isinstance(record.get("source"), str) else "images"}),
        "reactions": N.reactions(item) if any(stats.get(n) is not None for n in N.REACTIONS) else None,
        "like_count": N._int(stats.get("likeCount")),
        "heart_count": N._int(stats.get("heartCount")),
        "laugh_count": N._int(stats.get("laughCount")),
        "cry_count": N._int(stats.get("cryCount")),
        "comment_count": N._int(stats.get("commentCount")),
        "prompt": _str(fields["prompt"]),
        "negative_prompt": _str(fields["negative_prompt"]),
        "seed": seed,
        "steps": N._int(fields["steps"]),
        "sampler": _str(fields["sampler"]),
        "cfg_scale": _float(fields["cfg_scale"]),
        "clip_skip": N._int(fields["clip_skip"]),
        "url": record.get("url"),
        "meta_json": _json(meta),
        "tags": N.tags(item),
    }


def caption(data: dict[str, Any], field: str) -> str | None:
    """The text a captions `.txt` or a webdataset `txt` holds for `field`, or None when the row has none:
    a list (tags) is one comma-separated line, as kohya-style trainers read them."""
    value = data.get(field)
    if isinstance(value, list):
        value = ", ".join(str(c) for c in value)
    text = "" if value is None else str(value).strip()
    return text or None


def typed(data: dict[str, Any]) -> dict[str, Any]:
    """`data` fit for a typed column store: a seed past int64 (they exist in the wild) becomes null;
    `meta_json` keeps it."""
    seed = data["seed"]
    if seed is not None and not -_INT64 <= seed < _INT64:
        return {**data, "seed": None}
    return data


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


def _json(meta: dict[str, Any] | None) -> str | None:
    if meta is None:
        return None
    try:
        return orjson.dumps(meta).decode()
    except TypeError:  # an integer past 64 bits (seeds exist): orjson refuses it, the standard library does not
        return json.dumps(meta, ensure_ascii=False)


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
