"""Which browsing levels a crawl asked for, which it got, and a warning when mature ones never come.

Since 2026 CivitAI serves SFW only (PG, PG-13) to the green site, to restricted regions and, users
report, to anonymous callers, whatever `browsingLevel` says. A crawl that asked for R/X/XXX and finds
none on its first pages is most likely configured wrong, not looking at an SFW-only feed: `LevelWatch`
says so once, naming the likely causes. Pure; counting is one dict update per item.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from crawler import normalise as N

_MATURE_BITS = 4 | 8 | 16  # R, X, XXX
_MATURE_NSFW = frozenset({"Mature", "X", "true"})
#: Pages looked at before judging: the first page of a mature feed may well be all PG.
PAGES_JUDGED = 3


def asks_mature(params: list[tuple[str, str]]) -> bool:
    """The query asks for levels above PG-13 (`browsingLevel` wins over `nsfw`, as at the API)."""
    query = dict(params)
    level = query.get("browsingLevel")
    if level is not None:
        return level.isdigit() and bool(int(level) & _MATURE_BITS)
    return query.get("nsfw") in _MATURE_NSFW


def causes(api_host: str, has_key: bool) -> str:
    """The likely reasons, most likely first, for this crawl's settings."""
    found = []
    if not has_key:
        found.append("no API key (anonymous callers may be capped at SFW: set CIVITAI_API_KEY)")
    if api_host == "civitai.green":
        found.append("the site (civitai.green is SFW only: use --site red)")
    elif api_host == "civitai.com":
        found.append("the site (civitai.com is announced to become SFW only: --site red serves every level)")
    found.append("the region (restricted regions get PG and PG-13 only)")
    return "; ".join(found)


class LevelWatch:
    """Counts each listed item's level into `mix`; `observe` returns the warning once, when it is due."""

    __slots__ = ("asked", "causes", "mix", "pages", "mature", "judged")

    def __init__(self, asked: bool, causes: str, mix: Counter[str] | None = None) -> None:
        self.asked = asked
        self.causes = causes
        self.mix: Counter[str] = mix if mix is not None else Counter()  # level name (or "unknown") -> items
        self.pages = 0
        self.mature = 0
        self.judged = not asked

    def observe(self, items: list[Any], last: bool = False) -> str | None:
        """Count one page; the warning when `PAGES_JUDGED` pages (or the whole feed) held items but none mature."""
        mix = self.mix
        for item in items:
            rank = N.nsfw_rank(item) if isinstance(item, dict) else None
            mix[N.NSFW_LEVELS[rank] if rank is not None else "unknown"] += 1
            if rank is not None and rank >= 2:
                self.mature += 1
        self.pages += 1
        if self.judged or (self.pages < PAGES_JUDGED and not last):
            return None
        self.judged = True
        seen = sum(mix.values())
        if self.mature or not seen:
            return None
        return (f"warning: the crawl asked for levels above PG-13 but its first {self.pages} page(s) "
                f"({seen} images) hold none; likely causes: {self.causes}")
