"""The three cursor forms CivitAI has used, all mapping to an offset into one filtered feed.

Cursors carry a check value, so a cursor this server never issued is refused like the API does.
`Generations` adds the feed backend switches CivitAI has made: after `switch()`, a cursor issued
under an earlier backend is refused with `StaleCursor` (HTTP 400, the API's own message).
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable

from crawler.simulator.feeds import Selection

_EPOCH_MS = 1_700_000_000_000


class CursorError(ValueError):
    """A cursor this server never issued (HTTP 400)."""


class StaleCursor(CursorError):
    """A cursor issued by an earlier feed backend (HTTP 400 with `STALE_MESSAGE`)."""


STALE_MESSAGE = "This cursor cannot be continued with these filters"


class Generations:
    """Which backend generation issued each cursor of each query; off (`track=False`) it remembers nothing.

    A query restarted from its first page is issued the same cursors again, now under the current
    generation, so only cursors saved from before the switch are refused.
    """

    __slots__ = ("_track", "_issued", "generation")

    def __init__(self, track: bool) -> None:
        self._track = track
        self._issued: dict[tuple[Hashable, str], int] = {}
        self.generation = 0

    def issued(self, query: Hashable, cursor: str | int) -> None:
        if self._track:
            self._issued[(query, str(cursor))] = self.generation

    def check(self, query: Hashable, cursor: str) -> None:
        """Raise StaleCursor unless the current backend issued `cursor` for `query` (or never switched)."""
        if self._track and self.generation > 0 and self._issued.get((query, cursor)) != self.generation:
            raise StaleCursor(STALE_MESSAGE)

    def switch(self) -> int:
        """A new feed backend: every cursor issued so far goes stale. Returns the new generation."""
        if not self._track:
            raise RuntimeError("switching backends needs SimConfig(stale_cursors=True)")
        self.generation += 1
        return self.generation


class Cursors:
    """Encodes the offset of the next page and decodes it back, in one of the cursor styles."""

    __slots__ = ("_style", "_seed")

    def __init__(self, style: str, seed: int) -> None:
        self._style = style
        self._seed = seed

    def encode(self, offset: int, feed: Selection) -> str | int:
        if self._style == "number":
            return offset  # a JSON number, like the official reference's `"nextCursor": 101`
        if self._style == "feed":
            record = feed.records[offset]
            return f"feed:{record.created_ms}:{record.item['id']}"
        return self.encode_offset(offset)

    def encode_offset(self, offset: int) -> str:
        """Today's `"<offset>|<ms>"` form whatever the style; `/models` pages with it too."""
        return f"{offset}|{self._check_ms(offset)}"

    def decode_offset(self, cursor: str) -> int:
        offset, sep, ms = cursor.partition("|")
        if not sep or not offset.isdigit() or ms != str(self._check_ms(int(offset))):
            raise CursorError(f"invalid cursor {cursor!r}")
        return int(offset)

    def decode(self, cursor: str, feed: Selection) -> int:
        """Offset of the page `cursor` points at; raises CursorError for anything not issued."""
        if self._style == "number":
            if not cursor.isdigit() or int(cursor) > len(feed.records):
                raise CursorError(f"invalid cursor {cursor!r}")
            return int(cursor)
        if self._style == "feed":
            return self._decode_feed(cursor, feed)
        return self.decode_offset(cursor)

    def _decode_feed(self, cursor: str, feed: Selection) -> int:
        # Keyset style: the cursor names the first item of the next page, so inserts do not shift it.
        prefix, _, rest = cursor.partition(":")
        ms, _, image_id = rest.partition(":")
        if prefix != "feed" or not ms.isdigit() or not image_id.isdigit():
            raise CursorError(f"invalid cursor {cursor!r}")
        position = feed.position(int(image_id))
        if position is None or feed.records[position].created_ms != int(ms):
            raise CursorError(f"invalid cursor {cursor!r}")
        return position

    def _check_ms(self, offset: int) -> int:
        # Looks like CivitAI's sortAt milliseconds, but is a check value over (seed, offset).
        return _EPOCH_MS + zlib.crc32(f"{self._seed}:{offset}".encode()) * 17
