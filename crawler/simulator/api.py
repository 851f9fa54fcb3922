"""`GET /api/v1/images`: offset-cursor paging over a filtered feed, with the API's faults and modes.

Hidden records use up offsets but are dropped after the page is cut, as on CivitAI.
"""

from __future__ import annotations

from typing import Any

import orjson
from email.utils import formatdate

from aiohttp import web

from .answer import json_answer, next_page
from .catalogue import Catalogue, Selection
from .config import FaultConfig, SimConfig
from .cursors import Cursors
from .faults import FaultPicker
from .hostile import hostile_items
from .modes import NORMAL_PAGES, fixed_answer
from .query import parse_query


class ImagesEndpoint:
    """One per server; holds nothing per request."""

    __slots__ = ("_catalogue", "_cursors", "_faults", "_cfg", "_mode", "_hostile", "_pages")

    def __init__(
        self, catalogue: Catalogue, cursors: Cursors, faults: FaultPicker, cfg: FaultConfig, sim: SimConfig | None = None
    ) -> None:
        self._catalogue = catalogue
        self._cursors = cursors
        self._faults = faults
        self._cfg = cfg
        self._mode = sim.api_mode if sim is not None else "normal"
        self._hostile = sim is not None and sim.hostile_items
        self._pages = 0  # pages answered so far, for the modes that turn hostile after a few

    async def handle(self, request: web.Request) -> web.StreamResponse:
        fixed = fixed_answer(self._mode, request)
        if fixed is not None:
            return fixed
        answer = json_answer(request, self._faults, lambda: self._page(request))
        # The site's clock is its newest upload (periods are measured from it), and says so as servers
        # do, in the Date header: a client measuring time windows reads "now" there.
        answer.headers["Date"] = formatdate(self._catalogue.newest_ms / 1000, usegmt=True)
        return answer

    def _page(self, request: web.Request) -> bytes:
        query = parse_query(request.query)
        origin = f"http://{request.host}"
        late = self._pages >= NORMAL_PAGES
        self._pages += 1
        if late and self._mode == "empty-forever":
            # Never a repeat (a loop guard would catch that) and never an end: only a page budget stops it.
            return orjson.dumps({"items": [], "metadata": next_page(request, origin, f"empty|{self._pages}")})
        feed = self._catalogue.select(query.filters)
        offset = self._cursors.decode(query.cursor, feed) if query.cursor is not None else 0
        window = feed.records[offset : offset + query.limit]
        items: list[Any] = [_render(r.item, origin, query.with_meta) for r in window if not r.hidden]
        if items and offset > 0 and self._faults.chance(self._cfg.duplicate):
            repeat = _last_visible(feed, max(0, offset - query.limit), offset)
            if repeat is not None:
                items.insert(0, _render(repeat, origin, query.with_meta))
        if self._hostile and query.cursor is None:
            items.extend(hostile_items(origin, self._catalogue))
        metadata: dict[str, Any] = {}
        following = offset + query.limit
        if late and self._mode == "cursor-loop" and query.cursor is not None:
            # The cursor just sent, in the very form it was issued: the next page is this page again.
            metadata = next_page(request, origin, self._cursors.encode(offset, feed))
        elif query.limit > 0 and following < len(feed.records):
            metadata = next_page(request, origin, self._cursors.encode(following, feed))
            # civitai/civitai#981: some sorts answer a null nextCursor while nextPage still goes on.
            if self._faults.chance(self._cfg.null_cursor):
                metadata["nextCursor"] = None
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
