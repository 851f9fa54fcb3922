"""Hostile `/images` items and the CDN files behind them, for a crawler's hostile-input suite.

Every entry of `HOSTILE` names one attack; ids sit in 1_000..1_099, far below catalogue ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from crawler.simulator.bodies import BodyMaker
from crawler.simulator.items import HASH1, uuid4_from

# What a correct crawler does with a hostile item:
INVALID = "invalid"  # skips it as un-mirrorable and counts it; fetches nothing
FAILED = "failed"  # records it as failed (refused host or redirect, too large, not an image, stalled)
MIRRORED = "mirrored"  # saves the file under images/, named by the id, metadata kept raw

#: name -> (the item's usable integer id, or None; what a correct crawler does with it).
#: `huge-declared` and `huge-chunked` fail only under a --max-bytes below 50 MB.
HOSTILE: Mapping[str, tuple[int | None, str]] = MappingProxyType({
    "no-id": (None, INVALID),  # no `id`; the url has neither a numeric file name nor a uuid
    "no-url": (1001, INVALID),
    "id-string": (None, INVALID),  # "id": "1002abc"
    "id-float": (None, INVALID),  # "id": 1003.5
    "id-bool": (None, INVALID),  # "id": true
    "not-an-object": (None, INVALID),  # three items: "surprise", null, 7
    "url-not-string": (1004, INVALID),  # "url": 12345
    "foreign-host": (1005, FAILED),  # https://evil.invalid/...: not an allowed host
    "localhost-host": (1006, FAILED),  # http://localhost:PORT/...: not the API's host 127.0.0.1
    "traversal": (1007, MIRRORED),  # file name `..%2F..%2F..%2Fetc%2Fpasswd`
    "traversal-dots": (1008, MIRRORED),  # `/width=450/../../../../tmp/evil.jpeg`
    "redirect-out": (1009, FAILED),  # 302 to localhost
    "redirect-in": (1010, MIRRORED),  # 302 to another path on the same origin
    "huge-declared": (1011, FAILED),  # Content-Length 50 MB, streamed slowly
    "huge-chunked": (1012, FAILED),  # 50 MB chunked, no Content-Length
    "no-length": (1013, MIRRORED),  # a small image, chunked
    "html-page": (1014, FAILED),  # 200 text/html
    "endless": (1015, FAILED),  # a few bytes, then nothing until the client leaves
    "wrong-types": (1016, MIRRORED),  # width "832", height null, stats "lots", createdAt "yesterday", ...
})

HUGE_BYTES = 50_000_000
# Where a client that normalises `..` lands for `traversal-dots` (aiohttp and browsers do, urllib does not).
DOTS_RESOLVED = "/tmp/evil.jpeg"
_FOREIGN_UUID = "0e5c0a1d-7f3b-4c2e-9d8a-6b5f4e3d2c1b"  # made up; evil.invalid never resolves anyway


@dataclass(frozen=True, slots=True)
class HostileFile:
    """One CDN file only hostile items point at; `serve` says how the CDN answers for it."""

    name: str
    uuid: str
    serve: str  # image | chunked | redirect-out | redirect-in | huge-declared | huge-chunked | html | endless
    body_id: int  # whose deterministic body an image answer carries


# File name -> (how it is served, the id its body is made for). Decoys back the invalid items that
# have a URL: a crawler that wrongly mirrors one shows up as an extra file and a logged CDN request.
_FILES: Mapping[str, tuple[str, int]] = MappingProxyType({
    "decoy-id-string": ("image", 1002),
    "decoy-id-float": ("image", 1003),
    "decoy-id-bool": ("image", 1017),
    "localhost-host": ("image", 1006),
    "traversal": ("image", 1007),
    "traversal-dots": ("image", 1008),
    "redirect-out": ("redirect-out", 1009),
    "redirect-in": ("redirect-in", 1010),
    "redirect-in-target": ("image", 1010),
    "huge-declared": ("huge-declared", 1011),
    "huge-chunked": ("huge-chunked", 1012),
    "no-length": ("chunked", 1013),
    "html-page": ("html", 1014),
    "endless": ("endless", 1015),
    "wrong-types": ("image", 1016),
})


class HostileSet:
    """The hostile files of one seed: their uuids, bodies, and what a correct mirror ends up with."""

    __slots__ = ("_bodies", "by_name", "by_uuid")

    def __init__(self, seed: int, bodies: BodyMaker) -> None:
        self._bodies = bodies
        self.by_name = {
            name: HostileFile(name, _uuid_for(seed, name), serve, body_id) for name, (serve, body_id) in _FILES.items()
        }
        self.by_uuid = {f.uuid: f for f in self.by_name.values()}

    def uuid(self, name: str) -> str:
        return self.by_name[name].uuid

    def body(self, file: HostileFile) -> bytes:
        return self._bodies.body(file.body_id, ("original", 0), "image/jpeg")

    def path(self, name: str, file_name: str) -> str:
        return f"/{HASH1}/{self.uuid(name)}/width=450/{file_name}"

    def expected(self) -> dict[int, str]:
        """id -> sha256 of each hostile item a correct crawler mirrors, fetching each URL as listed.

        Every one of them is served the same whatever the `params` segment says, but `traversal-dots`
        only at its listed path or its `..`-resolved one: a --width rewrite of it reaches nothing.
        """
        by_id = {f.body_id: f for f in self.by_name.values() if f.serve in ("image", "chunked")}
        mirrored = (ident for ident, what in HOSTILE.values() if what == MIRRORED and ident is not None)
        return {i: hashlib.sha256(self.body(by_id[i])).hexdigest() for i in mirrored}


def failed_ids() -> set[int]:
    return {ident for ident, what in HOSTILE.values() if what == FAILED and ident is not None}


def hostile_items(origin: str, files: HostileSet) -> list[Any]:
    """The hostile items in `HOSTILE` order, URLs on `origin` (the request's own, as real items have)."""
    port = urlsplit(origin).port
    out: list[Any] = []
    for name in HOSTILE:
        out.extend(_build(name, origin, port, files))
    return out


def invalid_count(files: HostileSet) -> int:
    """How many of `hostile_items` a correct crawler skips as un-mirrorable (not-an-object counts 3)."""
    return sum(len(_build(name, "", None, files)) for name, (_, what) in HOSTILE.items() if what == INVALID)


def localhost_origin(port: int | None) -> str:
    """Our own server under another name: refused by a crawler that allows only the API's host."""
    return f"http://localhost:{port}"


def _build(name: str, origin: str, port: int | None, files: HostileSet) -> list[Any]:
    ident = HOSTILE[name][0]
    if name == "no-id":
        item = _item(None, f"{origin}/{HASH1}/not-a-uuid/width=450/not-a-number.jpeg")
        del item["id"]
        return [item]
    if name == "no-url":
        item = _item(ident, "")
        del item["url"]
        return [item]
    if name == "id-string":
        return [_item("1002abc", origin + files.path("decoy-id-string", "1002.jpeg"))]
    if name == "id-float":
        return [_item(1003.5, origin + files.path("decoy-id-float", "1003.jpeg"))]
    if name == "id-bool":
        return [_item(True, origin + files.path("decoy-id-bool", "1017.jpeg"))]
    if name == "not-an-object":
        return ["surprise", None, 7]
    if name == "url-not-string":
        return [_item(ident, 12345)]
    if name == "foreign-host":
        return [_item(ident, f"https://evil.invalid/{HASH1}/{_FOREIGN_UUID}/width=450/1005.jpeg")]
    if name == "localhost-host":
        return [_item(ident, localhost_origin(port) + files.path(name, "1006.jpeg"))]
    if name == "traversal":
        return [_item(ident, origin + files.path(name, "..%2F..%2F..%2Fetc%2Fpasswd"))]
    if name == "traversal-dots":
        return [_item(ident, origin + files.path(name, "../../../../tmp/evil.jpeg"))]
    if name == "wrong-types":
        item = _item(ident, origin + files.path(name, "1016.jpeg"))
        item.update(width="832", height=None, stats="lots", nsfwLevel=3, createdAt="yesterday", meta="not an object")
        return [item]
    return [_item(ident, origin + files.path(name, f"{ident}.jpeg"))]


def _item(ident: Any, url: Any) -> dict[str, Any]:
    """Every field a real item has, so only the one hostile field differs."""
    return {
        "id": ident,
        "url": url,
        "hash": "U00000fQfQfQfQfQfQfQfQfQfQfQ",
        "width": 450,
        "height": 450,
        "nsfwLevel": "None",
        "type": "image",
        "nsfw": False,
        "browsingLevel": 1,
        "createdAt": "2025-04-17T21:28:57.225Z",
        "postId": 1,
        "stats": {"cryCount": 0, "laughCount": 0, "likeCount": 0, "dislikeCount": 0, "heartCount": 0, "commentCount": 0},
        "meta": None,
        "username": "hostile",
        "baseModel": "SDXL 1.0",
        "modelVersionIds": [],
        "thumbnail": None,
    }


def _uuid_for(seed: int, name: str) -> str:
    return uuid4_from(int.from_bytes(hashlib.sha256(f"{seed}:hostile:{name}".encode()).digest()[:16], "big"))
