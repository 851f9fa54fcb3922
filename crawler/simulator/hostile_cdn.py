"""How the CDN answers for the files behind `hostile.HOSTILE`: redirects, lies about size, endless bodies.

No faults apply here: each file misbehaves the same way every time, so a test can name the outcome.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from crawler.simulator import abrupt
from crawler.simulator.hostile import HUGE_BYTES, HostileFile, HostileSet, localhost_origin
from crawler.simulator.log import ENTRY_KEY, LogEntry

_CHUNK = 64 * 1024
_CHUNK_PAUSE = 0.002  # slow enough that a crawler's size check bites long before 50 MB
_JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
_HTML_PAGE = b"<!DOCTYPE html><html><head><title>Hello</title></head><body>Not an image at all</body></html>"


class HostileCdn:
    """One per server; `closing` is set at shutdown so endless and slow bodies stop at once."""

    __slots__ = ("_files", "_closing")

    def __init__(self, files: HostileSet, closing: asyncio.Event) -> None:
        self._files = files
        self._closing = closing

    def file(self, uuid: str) -> HostileFile | None:
        return self._files.by_uuid.get(uuid)

    async def serve(self, request: web.Request, file: HostileFile) -> web.StreamResponse:
        entry: LogEntry = request[ENTRY_KEY]
        entry.kind = "cdn"  # also for the `..`-resolved path, which is outside the CDN prefix
        serve = file.serve
        if serve == "image":
            return web.Response(body=self._files.body(file), content_type="image/jpeg")
        if serve == "html":
            return web.Response(body=_HTML_PAGE, content_type="text/html")
        if serve in ("redirect-out", "redirect-in"):
            return web.Response(status=302, headers={"Location": self._redirect_target(request, file)})
        if serve == "chunked":
            return await self._stream(request, entry, self._files.body(file), declared=None)
        if serve == "endless":
            return await self._endless(request, entry)
        declared = HUGE_BYTES if serve == "huge-declared" else None
        return await self._stream(request, entry, _huge_body(), declared=declared, total=HUGE_BYTES)

    def _redirect_target(self, request: web.Request, file: HostileFile) -> str:
        if file.serve == "redirect-out":
            # Served if followed, so a crawler that follows it shows in the log as Host: localhost.
            origin = localhost_origin(request.url.port)
            return origin + self._files.path("localhost-host", f"{file.body_id}.jpeg")
        return f"{request.scheme}://{request.host}" + self._files.path("redirect-in-target", f"{file.body_id}.jpeg")

    async def _stream(
        self, request: web.Request, entry: LogEntry, block: bytes, declared: int | None, total: int | None = None
    ) -> web.StreamResponse:
        """`total` bytes cut from `block` repeated (or `block` once), in chunks; stops when the client goes."""
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        if declared is not None:
            response.content_length = declared
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        entry.status = response.status  # a client that hangs up cancels us before the middleware sees it
        left = len(block) if total is None else total
        offset = 0
        while left > 0 and not self._closing.is_set():
            size = min(_CHUNK, left)
            chunk = block[offset : offset + size] if total is None else block[:size]
            try:
                await response.write(chunk)
            except ConnectionError:
                return response  # the client left: what it never took is not counted as sent
            entry.bytes_sent += size
            offset += size
            left -= size
            if total is not None:
                await asyncio.sleep(_CHUNK_PAUSE)
        if left == 0:
            await response.write_eof()
        else:
            abrupt.reset(request)  # shutdown: end it now rather than wait out 50 MB
        return response

    async def _endless(self, request: web.Request, entry: LogEntry) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        entry.status = response.status
        await response.write(_JPEG_HEAD)
        entry.bytes_sent = len(_JPEG_HEAD)
        # Never finishes: a client that hangs up cancels this handler; shutdown sets `closing`.
        await self._closing.wait()
        abrupt.reset(request)
        return response


def _huge_body() -> bytes:
    """One chunk's worth: a JPEG header, then filler the size check should never let through."""
    return (_JPEG_HEAD + bytes(range(256)) * (_CHUNK // 256 + 1))[:_CHUNK]
