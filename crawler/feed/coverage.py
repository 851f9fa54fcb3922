"""What a part's chains cover in createdAt, and the holes left: how period windows narrow a gap.

A part's Newest chain covers everything newer than its edge, its Oldest chain everything older than
its edge. A `period` window listed Oldest starts where the API's clock puts the window's start (a
year back, a month back...), which may fall inside the gap: it covers from the first item it listed
up to its edge. The union of these half-lines and intervals is what the listing proves; whatever
lies between them is a `Hole`. Joins are strict (`met()`'s rule): items sharing a createdAt at an
edge may be split by a cut, so touching intervals do not count as joined.

A window's start is trusted only if it held still while the chain paged: the API measures the
window from its clock at each request and pages by offset, so items leaving the window's old end
shift every later page and some are skipped. `drifted()` says so from the window's first page
asked again afterwards (`run/proof.py`). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crawler.feed.deep import Progress
from crawler.normalise import created_at

_LOW = datetime.min.replace(tzinfo=UTC)
_HIGH = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Hole:
    """Nothing proven between `after` and `before` (None: no end proven on that side)."""

    after: datetime | None
    before: datetime | None
    listed_oldest: int  # by the chain whose cover ends at `after`
    listed_newest: int  # by the chain whose cover starts at `before`


def _short(chain: Progress, cap: int, limit: int) -> bool:
    return chain.whole or (chain.ended and not chain.capped(cap, limit))


def holes(newest: Progress, oldest: Progress, windows: list[Progress], cap: int, limit: int) -> list[Hole]:
    """The createdAt ranges of a part that no chain covers; [] when the listing is whole."""
    if _short(newest, cap, limit) or _short(oldest, cap, limit):
        return []
    spans: list[tuple[datetime, datetime, int]] = []  # (from, to, listed), open at both ends
    if oldest.edge is not None:
        spans.append((_LOW, oldest.edge, oldest.listed))
    if newest.edge is not None:
        spans.append((newest.edge, _HIGH, newest.listed))
    for window in windows:
        if window.start is not None and window.edge is not None:
            spans.append((window.start, _HIGH if _short(window, cap, limit) else window.edge, window.listed))
    found: list[Hole] = []
    reach, below = _LOW, 0
    first = True
    for low, high, listed in sorted(spans, key=lambda s: s[0]):
        if not (low < reach or (first and low == _LOW)):
            found.append(Hole(_bound(reach), _bound(low), below, listed))
        first = False
        if high > reach:
            reach, below = high, listed
    if reach < _HIGH or not spans:
        found.append(Hole(_bound(reach), None, below, 0))
    return found


def reached(window: Progress, newest: Progress, oldest: Progress, others: list[Progress]) -> bool:
    """A window's chain has joined what is covered above it (Newest's edge, or a shorter window's start), or
    it started where the Oldest chain did (the window holds the whole part: it would list the same)."""
    if window.edge is None or window.start is None:
        return False
    if newest.edge is not None and window.edge > newest.edge:
        return True
    if oldest.start is not None and window.start <= oldest.start:
        return True
    return any(o.start is not None and window.start < o.start < window.edge for o in others)


def drifted(window: Progress, first_page: list[Any] | None) -> bool:
    """The window's first page, asked again after its chain paged, no longer starts where the chain began
    (or could not be had): its start moved while it paged, so items may have slipped past its pages."""
    if window.start is None:
        return False
    if first_page is None:
        return True
    times = [t for t in (created_at(i) for i in first_page if isinstance(i, dict)) if t is not None]
    return not times or min(times) > window.start


def _bound(when: datetime) -> datetime | None:
    return None if when in (_LOW, _HIGH) else when
