"""The mirror's files as the server may give them out: originals, and thumbnails cached under the state dir.

`media_path` is the only way from a record to a file: the record's relative path must stay inside the
images directory once every symlink is resolved, else None (a 404), whatever `..`, encoding or link
it uses. Thumbnails are made once with Pillow (`STATE/serve/thumbs/`, deletable at any time); a file
Pillow cannot read (a video, a damaged or unknown image, or no Pillow installed) gets a small SVG
placeholder of its aspect ratio instead, so the gallery never shows a broken image.
"""

from __future__ import annotations

import html
import io
import os
from pathlib import Path

from crawler.serve.index import INDEX_DIR

THUMB_WIDTH = 320
_THUMB_MAX_HEIGHT = 640
_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
          ".gif": "image/gif", ".avif": "image/avif", ".mp4": "video/mp4", ".webm": "video/webm"}


def media_path(images: Path, rel: object) -> Path | None:
    """The file a record names, if it is a regular file inside `images` (symlinks resolved)."""
    if not isinstance(rel, str) or not rel or "\0" in rel:
        return None
    candidate = Path(rel)
    if candidate.is_absolute() or ".." in candidate.parts:
        return None
    try:
        base = images.resolve(strict=True)
        resolved = (images / candidate).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not resolved.is_relative_to(base) or not resolved.is_file():
        return None
    return resolved


def content_type(path: Path) -> str:
    return _TYPES.get(path.suffix.lower(), "application/octet-stream")


def thumbnail(state_dir: Path, source: Path, sha256: object, width: int | None, height: int | None) -> tuple[bytes, str]:
    """(body, content type) of the thumbnail of `source`, made on first use and cached by content hash."""
    name = sha256 if isinstance(sha256, str) and sha256.isalnum() else None
    cached = state_dir / INDEX_DIR / "thumbs" / name[:2] / f"{name}.jpg" if name else None
    if cached is not None and cached.is_file():
        return cached.read_bytes(), "image/jpeg"
    body = _make(source)
    if body is None:
        return _placeholder(width, height, source.suffix.lstrip(".")), "image/svg+xml"
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        part = cached.with_name(f"{cached.name}.{os.getpid()}.part")
        part.write_bytes(body)
        os.replace(part, cached)  # two requests making the same thumbnail both write whole files
    return body, "image/jpeg"


def _make(source: Path) -> bytes | None:
    try:
        from PIL import Image
    except ImportError:
        return None
    try:
        with Image.open(source) as image:
            image.draft("RGB", (THUMB_WIDTH, _THUMB_MAX_HEIGHT))  # JPEG: decode at a reduced scale, much faster
            image.thumbnail((THUMB_WIDTH, _THUMB_MAX_HEIGHT))
            out = io.BytesIO()
            image.convert("RGB").save(out, "JPEG", quality=80)
            return out.getvalue()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _placeholder(width: int | None, height: int | None, label: str) -> bytes:
    w = THUMB_WIDTH
    h = max(40, min(_THUMB_MAX_HEIGHT, round(w * height / width))) if width and height else w
    text = html.escape(label[:8] or "file")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
            f'<rect width="100%" height="100%" fill="#2a2f3a"/>'
            f'<text x="50%" y="50%" fill="#9aa4b5" font-family="sans-serif" font-size="22" '
            f'text-anchor="middle" dominant-baseline="middle">{text}</text></svg>').encode()
