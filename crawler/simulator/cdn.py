"""`GET /{hash1}/{uuid}/{params}/{name}`: the image CDN, resizing by `width=`, with its faults.

Partial-write faults stream the body with `web.StreamResponse` so they can stop halfway.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from aiohttp import web

from crawler.simulator import abrupt
from crawler.simulator.catalogue import Catalogue
from crawler.simulator.config import FaultConfig
from crawler.simulator.faults import FaultPicker
from crawler.simulator.hostile import DOTS_RESOLVED
from crawler.simulator.hostile_cdn import HostileCdn
from crawler.simulator.items import HASH1, Record
from crawler.simulator.log import ENTRY_KEY, LogEntry
from crawler.simulator.options import SizeRequest, parse_options
from crawler.simulator.shapes import still_video

_HTML_500 = b"<html><head><title>500 Internal Server Error</title></head><body><h1>500</h1></body></html>"
# What a CDN's bot check or error page looks like to a client that trusts status 200 blindly.
_HTML_PAGE = b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>Checking your browser</body></html>"


class CdnEndpoint:
    """One per server; `closing` is set at shutdown so a stalled body gives up at once."""

    __slots__ = ("_catalogue", "_faults", "_cfg", "_closing", "_hostile", "_shapes")

    def __init__(
        self, catalogue: Catalogue, faults: FaultPicker, cfg: FaultConfig, closing: asyncio.Event, shapes: bool = False
    ) -> None:
        self._shapes = shapes
        self._catalogue = catalogue
        self._faults = faults
        self._cfg = cfg
        self._closing = closing
        self._hostile = HostileCdn(catalogue.hostile, closing)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        record = self._catalogue.by_uuid(info["uuid"]) if info["hash1"] == HASH1 else None
        if record is None:
            hostile = self._hostile.file(info["uuid"]) if info["hash1"] == HASH1 else None
            if hostile is not None:
                return await self._hostile.serve(request, hostile)
            return web.Response(status=404, text="Not Found")
        try:
            size = parse_options(info["params"])
        except ValueError as exc:
            return web.Response(status=400, text=str(exc))
        return await self._serve(request, record, size)

    async def b2(self, request: web.Request) -> web.StreamResponse:
        """image-b2's media path `/file/civitai-media-cache/{uuid}[/{params}]/{name}`: no params, the original."""
        info = request.match_info
        record = self._catalogue.by_uuid(info["uuid"])
        if record is None:
            return web.Response(status=404, text="Not Found")
        try:
            size = parse_options(info["params"]) if "params" in info else SizeRequest(original=True)
        except ValueError as exc:
            return web.Response(status=400, text=str(exc))
        return await self._serve(request, record, size)

    async def _serve(self, request: web.Request, record: Record, size: SizeRequest) -> web.StreamResponse:
        entry: LogEntry = request[ENTRY_KEY]
        if self._shapes and not size.original and still_video(record):
            size = replace(size, still=True)  # a size transform turned this video into one frame
        fault = self._faults.cdn()
        entry.fault = fault
        if fault == "429":
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": self._faults.retry_after()})
        if fault == "500":
            return web.Response(status=500, body=_HTML_500, content_type="text/html")
        if record.gone:
            entry.fault = None  # a deleted file has no body to break
            return web.Response(status=record.gone, text="Not Found" if record.gone == 404 else "Gone")
        if fault == "html":
            return web.Response(body=_HTML_PAGE, content_type="text/html")
        data, content_type = self._catalogue.file(record, size)
        if fault in ("reset", "truncate", "stall"):
            return await self._broken(request, fault, data, content_type)
        return _ranged(request, data, content_type)

    async def _broken(self, request: web.Request, fault: str, data: bytes, content_type: str) -> web.StreamResponse:
        """Headers promise the whole body; only part of it arrives (or arrives very late)."""
        response = web.StreamResponse(headers={"Content-Type": content_type})
        response.content_length = len(data)
        await response.prepare(request)
        half = len(data) // 2
        await response.write(data[:half])
        entry: LogEntry = request[ENTRY_KEY]
        entry.bytes_sent = half
        if fault == "reset":
            abrupt.reset(request)
            return response
        if fault == "truncate":
            abrupt.close_early(request)
            return response
        # Stall: hang up to stall_seconds. A client that leaves cancels this handler
        # (handler_cancellation), and shutdown sets `closing` so it never waits the stall out.
        try:
            await asyncio.wait_for(self._closing.wait(), self._cfg.stall_seconds)
        except TimeoutError:
            await response.write(data[half:])
            entry.bytes_sent = len(data)
            await response.write_eof()
            return response
        abrupt.reset(request)
        return response

    async def traversed(self, request: web.Request) -> web.StreamResponse:
        """Where hostile `traversal-dots` leads: unresolved (deeper than the CDN form) or `..`-resolved."""
        dots = self._catalogue.hostile.by_name["traversal-dots"]
        info = request.match_info
        unresolved = info.get("hash1") == HASH1 and info.get("uuid") == dots.uuid
        if unresolved or request.path == DOTS_RESOLVED:
            return await self._hostile.serve(request, dots)
        return web.Response(status=404, text="Not Found")


def _ranged(request: web.Request, data: bytes, content_type: str) -> web.Response:
    """Honour a single `Range: bytes=N-M` so a client may resume a cut download."""
    if "Range" not in request.headers:
        return web.Response(body=data, content_type=content_type, headers={"Accept-Ranges": "bytes"})
    try:
        wanted = request.http_range
        start, stop, _ = wanted.indices(len(data))
    except ValueError:
        wanted, start, stop = None, 0, 0
    if wanted is None or start >= stop:
        return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
    return web.Response(
        status=206,
        body=data[start:stop],
        content_type=content_type,
        headers={"Content-Range": f"bytes {start}-{stop - 1}/{len(data)}", "Accept-Ranges": "bytes"},
    )
