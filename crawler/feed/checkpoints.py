"""Which feed position is safe to resume from: the end of the longest prefix of fully settled pages.

Workers finish items out of order, so a page's "next" position may be recorded only once every item
of that page and of all pages before it is done, failed or gone. Pure bookkeeping, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crawler.feed.pages import Position

#: A page cut short (by --max-images or a stop): nothing after it may be checkpointed this run.
PARTIAL = object()


class PageLedger:
    __slots__ = ("_pending", "_next_page", "_on_advance", "_blocked")

    def __init__(self, on_advance: Callable[[int, Position | None], None]) -> None:
        """`on_advance(page, position)` is called when pages up to `page` are settled; position None = feed ended."""
        self._pending: dict[int, list[Any]] = {}
        self._next_page = 1
        self._on_advance = on_advance
        self._blocked = False

    def open_page(self, number: int, items: int, following: Position | object | None) -> None:
        self._pending[number] = [items, following]
        self._advance()

    def settle(self, page: int | None) -> None:
        if page is None:
            return
        self._pending[page][0] -= 1
        self._advance()

    def _advance(self) -> None:
        last: tuple[int, object] | None = None
        while not self._blocked:
            entry = self._pending.get(self._next_page)
            if entry is None or entry[0] > 0:
                break
            del self._pending[self._next_page]
            if entry[1] is PARTIAL:
                self._blocked = True
                break
            last = (self._next_page, entry[1])
            self._next_page += 1
        if last is not None:
            self._on_advance(last[0], last[1])  # type: ignore[arg-type]
