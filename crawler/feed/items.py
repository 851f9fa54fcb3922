"""From a raw API item to a download job: its key, the URL to fetch, and the width the file will have.

Pure and tolerant: any field but `id` and `url` may be missing or of the wrong type in the wild, and
the raw item is kept untouched for the manifest, since the metadata is half of a dataset. Images take
`--width`/`--original`, videos `--video-width`/`--video-original` (or `--original`), audio is fetched
as listed; a URL
whose options segment is not recognised for sure is fetched as listed too (`Job.unsized` says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crawler import urls
from crawler.keys import Key


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__ (2.1 us against
# 0.4 us for these 12 fields), and one is built per item listed. Nothing changes a job once made (`replace()` copies).
@dataclass(slots=True)
class Job:
    key: Key
    id: int | None
    uuid: str | None
    url: str  # what will be fetched (after width rewriting)
    width: int | None  # the width the file should have, when known
    item: dict[str, Any]
    page: int | None  # the feed page it came from; None for a retry of an earlier failure
    source: str | None = None  # model images: "model:M/version:V"; None for the /images feed
    chain: int = 0  # which cursor chain (partition of a plan) listed it: whose page `page` is
    listed: str | None = None  # the URL as listed, when `url` is a rewrite of it (a 404 there falls back to it)
    video: bool = False  # a video item: a still image answered for it is not the file
    unsized: str | None = None  # why a size was asked but the URL is fetched as listed (its form is not known)


@dataclass(frozen=True, slots=True)
class Sizes:
    """The size asked of the CDN: images and videos separately (a resized video may come back as one frame)."""

    width: int | None = None
    original: bool = False
    video_width: int | None = None
    video_original: bool = False


_VIDEO_EXTS = (".mp4", ".webm", ".mov", ".m4v", ".mkv")


class InvalidItem(ValueError):
    """The item cannot be mirrored at all (no usable id or url); counted, never fetched."""


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def make_job(item: Any, width: int | None, original: bool, page: int | None, source: str | None = None,
             chain: int = 0, sizes: Sizes | None = None) -> Job:
    """`width`/`original`: the image size (kept for callers); `sizes`, when given, wins and sizes videos too."""
    if not isinstance(item, dict):
        raise InvalidItem("item is not an object")
    url = item.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidItem("item has no url")
    ident = item.get("id")
    if ident is not None and _int(ident) is None:
        raise InvalidItem(f"item id is not an integer: {str(ident)[:40]!r}")
    if ident is not None and ident < 0:
        raise InvalidItem("item id is negative")
    segments = urls.path_segments(url)  # once: the uuid and the width asked both read it
    uuid = urls.uuid_in(segments)
    if ident is None:
        ident = urls.id_from_filename(url)
    key: Key | None = ident if ident is not None else uuid
    if key is None:
        raise InvalidItem("item has neither an id nor a uuid in its url")
    sizes = sizes or Sizes(width, original)
    kind = media_kind(item, url)
    if kind == "video":
        # --width never resizes a video (a resized video may come back as one frame); --original is safe.
        width, original = sizes.video_width, sizes.video_original or (sizes.original and sizes.video_width is None)
    elif kind == "audio":
        width, original = None, False
    else:
        width, original = sizes.width, sizes.original
    unsized = None
    try:
        target = urls.rewrite_size(url, width=width, original=original)
    except urls.BadImageUrl as e:
        target, unsized = url, str(e)  # never guess where the size goes: fetch it as listed
    return Job(key=key, id=ident, uuid=uuid, url=target,
               width=_expected_width(item, segments, width, original) if unsized is None
               else _expected_width(item, segments, None, False),
               item=item, page=page, source=source, chain=chain, listed=url if target != url else None,
               video=kind == "video", unsized=unsized)


def media_kind(item: dict[str, Any], url: str) -> str:
    """image, video or audio: the item's `type`, else (older items have none) the URL's extension."""
    kind = item.get("type")
    if kind in ("image", "video", "audio"):
        return str(kind)
    name = url.split("?", 1)[0].rsplit("/", 1)[-1].lower()
    return "video" if name.endswith(_VIDEO_EXTS) else "image"


def _expected_width(item: dict[str, Any], segments: list[str], width: int | None, original: bool) -> int | None:
    full = _int(item.get("width"))
    if original:
        return full
    if width is None:
        width = _width_in(segments)
        if width is None:
            return full
    # The server never upscales.
    return min(width, full) if full else width


def _width_in(segments: list[str]) -> int | None:
    """The width= of the URL's options segment (the one before the file name), if it has one."""
    if len(segments) < 2:
        return None
    for option in segments[-2].split(","):
        name, _, value = option.partition("=")
        if name == "width" and value.isdigit():
            return int(value)
    return None
