"""Deterministic file bodies for the simulated CDN: right magic bytes, cheap to make, cached.

A body is a format header followed by a 64-byte block repeated, keyed by (seed, id, rendition).
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections import OrderedDict

# A rendition is what the CDN serves for one request: the original file, or a resize to a width.
Rendition = tuple[str, int]  # ("original", 0) or ("width", served_width)

_JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
_JPEG_TAIL = b"\xff\xd9"
_PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
_MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


class BodyMaker:
    """Makes and caches bodies; the LRU is bounded so a long bench cannot grow it without limit."""

    __slots__ = ("_seed", "_typical", "_cache", "_max_entries", "_lock")

    def __init__(self, seed: int, typical_bytes: int, max_entries: int = 4096) -> None:
        self._seed = seed
        self._typical = typical_bytes
        self._cache: OrderedDict[tuple[int, Rendition, str], bytes] = OrderedDict()
        self._max_entries = max_entries
        # SimThread serves from its own thread while tests call Catalogue.body from theirs.
        self._lock = threading.Lock()

    def body(self, image_id: int, rendition: Rendition, content_type: str) -> bytes:
        """The cached body; use `make` for one-off bulk work that would only churn the cache."""
        key = (image_id, rendition, content_type)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        data = self.make(image_id, rendition, content_type)
        with self._lock:
            self._cache[key] = data
            if len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return data

    def make(self, image_id: int, rendition: Rendition, content_type: str) -> bytes:
        digest = hashlib.sha256(f"{self._seed}:{image_id}:{rendition[0]}:{rendition[1]}".encode()).digest()
        block = digest + hashlib.sha256(digest).digest()
        # Vary the length by up to +-25% around the typical size, deterministically.
        spread = self._typical // 4
        length = self._typical - spread + int.from_bytes(digest[:4], "big") % (2 * spread + 1)
        head, tail = _framing(content_type, length)
        fill = max(0, length - len(head) - len(tail))
        return head + (block * (fill // 64 + 1))[:fill] + tail


def _framing(content_type: str, length: int) -> tuple[bytes, bytes]:
    if content_type == "image/png":
        return _PNG_HEAD, b"IEND\xaeB`\x82"
    if content_type == "image/webp":
        return b"RIFF" + struct.pack("<I", length - 8) + b"WEBPVP8 ", b""
    if content_type == "video/mp4":
        return _MP4_HEAD, b""
    if content_type == "audio/mpeg":
        return b"ID3\x04\x00\x00\x00\x00\x00\x00", b""
    return _JPEG_HEAD, _JPEG_TAIL
