"""`GET /api/v1/images`: offset-cursor paging over a filtered feed, with the API's faults and modes.

Hidden records use up offsets but are dropped after the page is cut, as on CivitAI. The 2026
options of `SimConfig` act here: `depth_cap` ends a query's chain (no nextCursor) after that many
feed positions; a cursor from before `Generations.switch()` answers 400 (`stale_cursors`); the site,
region and key decide the levels shown (sites.py); `real_shapes` renders items as shapes.py says.
"""

from __future__ import annotations

from dataclasses import replace
from email.utils import formatdate
from typing import Any

import orjson
from aiohttp import web

from crawler.simulator.answer import json_answer, next_page
from crawler.simulator.catalogue import Catalogue
from crawler.simulator.config import FaultConfig, SimConfig
from crawler.simulator.cursors import Cursors, Generations
from crawler.simulator.faults import FaultPicker
from crawler.simulator.feeds import Selection
from crawler.simulator.hostile import hostile_items
from crawler.simulator.items import Record
from crawler.simulator.modes import NORMAL_PAGES, fixed_answer
from crawler.simulator.query import Filters, Query, parse_query
from crawler.simulator.shapes import shape_item
from crawler.simulator.sites import visible_levels
from crawler.simulator.tags import tags_of


class ImagesEndpoint:
    """One per server; holds nothing per request."""

    __slots__ = ("_catalogue", "_cursors", "_faults", "_cfg", "_sim", "_mode", "_hostile", "_pages", "generations")

    def __init__(
        self, catalogue: Catalogue, cursors: Cursors, faults: FaultPicker, cfg: FaultConfig, sim: SimConfig | None = None
    ) -> None:
        self._catalogue = catalogue
        self._cursors = cursors
        self._faults = faults
        self._cfg = cfg
        self._sim = sim if sim is not None else SimConfig()
        self._mode = self._sim.api_mode
        self._hostile = self._sim.hostile_items
        self._pages = 0  # pages answered so far, for the modes that turn hostile after a few
        self.generations = Generations(self._sim.stale_cursors)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        fixed = fixed_answer(self._mode, request)
        if fixed is not None:
            return fixed
        answer = json_answer(request, self._faults, lambda: self._page(request), self._sim.error_body)
        # The site's clock is its newest upload (periods are measured from it), and says so as servers
        # do, in the Date header: a client measuring time windows reads "now" there.
        answer.headers["Date"] = formatdate(self._catalogue.newest_ms / 1000, usegmt=True)
        return answer

    def _page(self, request: web.Request) -> bytes:
        query = parse_query(request.query)
        filters = query.filters
        levels = visible_levels(filters.levels, request, self._sim)
        if levels != filters.levels:
            filters = replace(filters, levels=levels)
        origin = f"{request.scheme}://{request.host}"
        late = self._pages >= NORMAL_PAGES
        self._pages += 1
        if late and self._mode == "empty-forever":
            # Never a repeat (a loop guard would catch that) and never an end: only a page budget stops it.
            return orjson.dumps({"items": [], "metadata": next_page(request, origin, f"empty|{self._pages}")})
        feed = self._catalogue.select(filters)
        offset = 0
        if query.cursor is not None:
            self.generations.check(filters, query.cursor)
            offset = self._cursors.decode(query.cursor, feed)
        # The real API stops paging a query near 50,000 items (users' reports): the chain just ends.
        end = min(len(feed.records), self._sim.depth_cap) if self._sim.depth_cap else len(feed.records)
        window = feed.records[offset : min(offset + query.limit, end)]
        flat = request.query.get("flatMeta", "false").lower() in ("true", "1")
        items: list[Any] = [self._render(r, origin, query, flat) for r in window if not r.hidden]
        if items and offset > 0 and self._faults.chance(self._cfg.duplicate):
            repeat = _last_visible(feed, max(0, offset - query.limit), offset)
            if repeat is not None:
                items.insert(0, self._render(repeat, origin, query, flat))
        if self._hostile and query.cursor is None:
            items.extend(hostile_items(origin, self._catalogue.hostile))
        metadata: dict[str, Any] = {}
        following = offset + query.limit
        if late and self._mode == "cursor-loop" and query.cursor is not None:
            # The cursor just sent, in the very form it was issued: the next page is this page again.
            metadata = self._next(request, origin, filters, offset, feed)
        elif query.limit > 0 and following < end:
            metadata = self._next(request, origin, filters, following, feed)
            # civitai/civitai#981: some sorts answer a null nextCursor while nextPage still goes on.
            if self._faults.chance(self._cfg.null_cursor):
                metadata["nextCursor"] = None
        return orjson.dumps({"items": items, "metadata": metadata})

    def _next(self, request: web.Request, origin: str, filters: Filters, offset: int, feed: Selection) -> dict[str, Any]:
        cursor = self._cursors.encode(offset, feed)
        self.generations.issued(filters, cursor)
        return next_page(request, origin, cursor)

    def _render(self, record: Record, origin: str, query: Query, flat_meta: bool) -> dict[str, Any]:
        out = _render(record.item, origin, query.with_meta)
        if query.with_tags:
            out["tags"] = tags_of(record)
        if self._sim.real_shapes:
            shape_item(out, record, origin, query.with_meta, flat_meta)
        return out


def _last_visible(feed: Selection, start: int, stop: int) -> Record | None:
    for record in reversed(feed.records[start:stop]):
        if not record.hidden:
            return record
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
