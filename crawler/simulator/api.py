"""`GET /api/v1/images`: offset-cursor paging over a filtered feed, with the API's faults.

Hidden records use up offsets but are dropped after the page is cut, as on CivitAI.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import orjson
from aiohttp import web

from . import abrupt
from .catalogue import Catalogue, Selection
from .config import FaultConfig
from .cursors import CursorError, Cursors
from .faults import FaultPicker
from .log import ENTRY_KEY, LogEntry
from .query import QueryError, parse_query

_HTML_503 = b"<html><head><title>503 Service Unavailable</title></head><body><h1>503 Service Unavailable</h1></body></html>"
_HTML_500 = b"<html><head><title>500 Internal Server Error</title></head><body><h1>Internal Server Error</h1></body></html>"


class ImagesEndpoint:
    """One per server; holds nothing per request."""

    __slots__ = ("_catalogue", "_cursors", "_faults", "_cfg")

    def __init__(self, catalogue: Catalogue, cursors: Cursors, faults: FaultPicker, cfg: FaultConfig) -> None:
        self._catalogue = catalogue
        self._cursors = cursors
        self._faults = faults
        self._cfg = cfg

    async def handle(self, request: web.Request) -> web.StreamResponse:
        entry: LogEntry = request[ENTRY_KEY]
        fault = self._faults.api()
        entry.fault = fault
        if fault == "reset":
            abrupt.reset(request)
            return web.Response(status=500)  # never sent: the connection is gone
        if fault == "429":
            return web.json_response({"error": "Too Many Requests"}, status=429, headers=self._retry_after())
        if fault == "503":
            return web.Response(body=_HTML_503, status=503, content_type="text/html", headers=self._retry_after())
        if fault == "500":
            return web.Response(body=_HTML_500, status=500, content_type="text/html")
        try:
            body = self._page(request)
        except (QueryError, CursorError) as exc:
            return web.Response(body=orjson.dumps({"error": str(exc)}), status=400, content_type="application/json")
        if fault == "malformed":
            body = body[: len(body) // 2]  # cut mid-document: status 200, JSON that does not parse
        return web.Response(body=body, content_type="application/json")

    def _retry_after(self) -> dict[str, str]:
        return {"Retry-After": self._faults.retry_after()}

    def _page(self, request: web.Request) -> bytes:
        query = parse_query(request.query)
        feed = self._catalogue.select(query.filters)
        offset = self._cursors.decode(query.cursor, feed) if query.cursor is not None else 0
        origin = f"http://{request.host}"
        window = feed.records[offset : offset + query.limit]
        items = [_render(r.item, origin, query.with_meta) for r in window if not r.hidden]
        if items and offset > 0 and self._faults.chance(self._cfg.duplicate):
            repeat = _last_visible(feed, max(0, offset - query.limit), offset)
            if repeat is not None:
                items.insert(0, _render(repeat, origin, query.with_meta))
        metadata: dict[str, Any] = {}
        following = offset + query.limit
        if query.limit > 0 and following < len(feed.records):
            cursor = self._cursors.encode(following, feed)
            pairs = [(k, v) for k, v in request.query.items() if k != "cursor"] + [("cursor", str(cursor))]
            # civitai/civitai#981: some sorts answer a null nextCursor while nextPage still goes on.
            null = self._faults.chance(self._cfg.null_cursor)
            metadata["nextCursor"] = None if null else cursor
            metadata["nextPage"] = f"{origin}{request.path}?{urlencode(pairs, quote_via=quote)}"
        return orjson.dumps({"items": items, "metadata": metadata})


def _last_visible(feed: Selection, start: int, stop: int) -> dict[str, Any] | None:
    for record in reversed(feed.records[start:stop]):
        if not record.hidden:
            return record.item
    return None


def _render(item: dict[str, Any], origin: str, with_meta: bool) -> dict[str, Any]:
    """The item as this request sees it: absolute URLs on the request's own host; meta on request."""
    out = dict(item)
    out["url"] = origin + item["url"]
    thumbnail = item.get("thumbnail")
    if thumbnail is not None:
        out["thumbnail"] = {**thumbnail, "url": origin + thumbnail["url"]}
    if not with_meta:
        out["meta"] = None
    return out
