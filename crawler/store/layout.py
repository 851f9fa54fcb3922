"""Where a mirrored image lives on disk: `DIR/images/<shard>/<shard>/<id>.<ext>`, decided by its key alone.

Ids are split by value (millions / thousands) so no folder holds more than 1,000 files or folders at
any scale; uuid keys use their first hex digits. Names never come from the URL, so a hostile URL
cannot place a file outside `DIR/images`.
"""

from __future__ import annotations

import re

from crawler.keys import Key

IMAGES_DIR = "images"
PART_SUFFIX = ".part"

_EXTENSIONS = {  # every key a media type: `is_media` takes a key as one
    "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/pjpeg": "jpeg", "image/png": "png", "image/webp": "webp",
    "image/gif": "gif", "image/avif": "avif", "image/heic": "heic", "image/bmp": "bmp", "image/tiff": "tiff",
    "video/mp4": "mp4", "video/webm": "webm", "video/quicktime": "mov",
    "audio/mpeg": "mp3", "audio/mp4": "m4a", "audio/ogg": "ogg", "audio/wav": "wav", "audio/flac": "flac",
}
_UUID_KEY = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def media_type(content_type: str | None) -> str:
    """`image/jpeg; charset=x` -> `image/jpeg`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_media(content_type: str | None) -> bool:
    if content_type in _EXTENSIONS:  # already a plain media type (the downloader's): no second split
        return True
    kind = media_type(content_type)
    return kind.startswith(("image/", "video/", "audio/")) and kind != "image/svg+xml"


def extension_for(content_type: str | None) -> str:
    if content_type in _EXTENSIONS:
        return _EXTENSIONS[content_type]
    kind = media_type(content_type)
    if kind in _EXTENSIONS:
        return _EXTENSIONS[kind]
    subtype = re.sub(r"[^a-z0-9]", "", kind.partition("/")[2])[:8]
    return subtype or "bin"


def shard_dir(key: Key) -> str:
    """`images/012/345` for id 12345678; plain strings, as this runs once per image."""
    if isinstance(key, int):
        if key < 0:
            raise ValueError(f"negative image id {key}")
        return f"{IMAGES_DIR}/{key // 1_000_000:03d}/{key // 1_000 % 1_000:03d}"
    if not _UUID_KEY.match(key):
        raise ValueError(f"not a uuid key: {key!r}")
    return f"{IMAGES_DIR}/u/{key[:2]}/{key[2:4]}"


def file_name(key: Key, content_type: str | None) -> str:
    return f"{key}.{extension_for(content_type)}"


def relative_path(key: Key, content_type: str | None) -> str:
    """The final path, relative to the mirror root, as recorded in the manifest."""
    return f"{shard_dir(key)}/{file_name(key, content_type)}"
