"""The shapes real `/images` items took in responses recorded up to 2026 (`SimConfig.real_shapes`).

Each quirk hits a fixed share of the items, chosen by a hash of the id, so the same item always
has the same shape and a test can ask which one it got (the `pick_*` functions). Pure; no I/O:
- `username` null, or an all-digit name sent as a bare JSON number;
- `meta` (with `withMeta=true`) nested as `{"id": N, "meta": {...}|null}` unless `flatMeta=true`,
  and some metas null, `{}`, or holding a ComfyUI workflow string that is not valid JSON;
- stats counters null; "older" items without `type`, `browsingLevel`, `baseModel`,
  `modelVersionIds`; `baseModel` null; `modelVersionIds` empty;
- URLs in the other forms seen: `image-b2` media paths `/file/civitai-media-cache/{uuid}/...`
  (options segment present or absent), upload names with spaces and `.png`, `.webm`, `.Mp4`,
  and the options segments `transcode=true,width=1080`, `anim=false,width=450,optimized=true`,
  `original=true,quality=100`;
- some videos answered as a still frame whenever a size is asked for (users' one-frame webps);
- (made by the catalogue, see `is_audio`) a few `audio` items, `audio/mpeg` files named `.mp3`.
"""

from __future__ import annotations

import zlib
from typing import Any

from crawler.simulator.items import HASH1, Record
from crawler.simulator.options import SizeRequest, parse_options

#: Where image-b2.civitai.com keeps media: no hash segment, and the options segment may be absent.
B2_PREFIX = "/file/civitai-media-cache"
#: Not JSON (a ComfyUI workflow as the API passed it on), as recorded.
COMFY_WORKFLOW = '{"3": {"inputs": {"seed": 1, "steps": 20}, "class_type": "KSampler"}, "workflow": undefined}'
#: URL forms `shaped_path` gives, by `pick_url`'s value.
URL_FORMS = ("b2-bare", "b2-options", "upload-name", "options-mixed", "original-quality")


def _pick(record: Record, salt: str, n: int) -> int:
    return zlib.crc32(f"{salt}:{record.item['id']}".encode()) % n


def pick_url(record: Record) -> str | None:
    """The URL form this item lists (one of URL_FORMS), or None for the catalogue's own path."""
    k = _pick(record, "url", 10)
    return URL_FORMS[k] if k < len(URL_FORMS) else None


def is_audio(image_id: int) -> bool:
    """Under real shapes, the catalogue makes this image an `audio` item (`audio/mpeg`, `.mp3`)."""
    return zlib.crc32(f"audio:{image_id}".encode()) % 30 == 0


def _ext(item: dict[str, Any]) -> str:
    return {"video": "mp4", "audio": "mp3"}.get(item["type"], "jpeg")


def still_video(record: Record) -> bool:
    """A video the CDN answers with a still frame whenever the URL asks for a size (not the original)."""
    return record.item["type"] == "video" and _pick(record, "still", 3) == 0


def shaped_path(record: Record) -> str:
    """The URL path (origin-relative) the item lists under real shapes; the CDN serves each form."""
    form = pick_url(record)
    item, uuid = record.item, record.uuid
    video, ext = item["type"] == "video", _ext(item)
    if form == "b2-bare":
        return f"{B2_PREFIX}/{uuid}/{uuid}.{ext}"
    if form == "b2-options":
        return f"{B2_PREFIX}/{uuid}/original=true,quality=100/{item['id']}.{ext}"
    if item["type"] == "audio":
        return str(item["url"])  # no other form recorded for audio
    if form == "upload-name":
        name = f"My%20video%20{item['id']}.webm" if video else f"ComfyUI%20{item['id']}%20(1).png"
        return f"/{HASH1}/{uuid}/width={item['width']}/{name}"
    if form == "options-mixed":
        if video:
            return f"/{HASH1}/{uuid}/transcode=true,width=1080/{item['id']}.Mp4"
        return f"/{HASH1}/{uuid}/anim=false,width=450,optimized=true/{item['id']}.jpeg"
    if form == "original-quality":
        return f"/{HASH1}/{uuid}/original=true,quality=100/{uuid}.{ext}"
    return str(item["url"])


def listed_size(path: str) -> SizeRequest:
    """The size a URL path asks for as listed; a b2 path without options is the original file."""
    parts = path.split("/")
    if path.startswith(B2_PREFIX + "/") and len(parts) == 5:
        return SizeRequest(original=True)
    return parse_options(parts[-2])


def shape_item(out: dict[str, Any], record: Record, origin: str, with_meta: bool, flat_meta: bool) -> None:
    """Give the rendered item `out` (a copy, URLs absolute) this record's real-world quirks, in place."""
    out["url"] = origin + shaped_path(record)
    user = _pick(record, "user", 12)
    if user == 0:
        out["username"] = None
    elif user == 1:
        out["username"] = record.user_id  # an all-digit name, sent as a number
    if _pick(record, "stats", 10) == 0:
        out["stats"] = dict.fromkeys(out["stats"])
    if _pick(record, "base", 10) == 0:
        out["baseModel"] = None
    if _pick(record, "versions", 10) == 0:
        out["modelVersionIds"] = []
    if record.item["type"] == "image" and _pick(record, "old", 15) == 0:  # from before videos and audio
        for key in ("type", "browsingLevel", "baseModel", "modelVersionIds"):
            out.pop(key, None)
    if with_meta:
        meta = _meta(record)
        out["meta"] = meta if flat_meta else {"id": record.item["id"], "meta": meta}


def _meta(record: Record) -> dict[str, Any] | None:
    meta = record.item["meta"]
    k = _pick(record, "meta", 8)
    if k == 0 or meta is None:
        return None
    if k == 1:
        return {}
    if k == 2:
        return {**meta, "workflow": COMFY_WORKFLOW, "Created Date": "2025-02-27T0240:27.6424173Z"}
    return dict(meta)
