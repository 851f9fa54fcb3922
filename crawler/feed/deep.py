"""`--deep`: the partitions of a query and the proof that their listings are whole, as pure bookkeeping.

The API stops paging one query near a depth (`--depth-cap`). A query listed `Newest` and `Oldest` is
whole when the two chains meet: once the ascending chain has reached an item newer than the oldest the
descending chain listed, every item is newer than one edge or older than the other. Where they do not
meet, the query is split into parts that together are the whole -- `browsingLevel` one bit at a time
(an image has exactly one level), then media `type` -- and each part is proven alone. A part those cannot
divide gets two splits that are not exhaustive (`coverage.py`): `period` windows, whose Oldest chains
start inside the gap (a meeting with them still proves), and base models (an image's can be null or a
name not listed, so their parts never add up to the whole: they only narrow what a gap may hold). What
stays unproven is a `Gap`: named, with its range and counts, never hidden.
Pure: no I/O; `run/proof.py` pages the chains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crawler.config.options import TYPES
from crawler.config.settings import CrawlConfig
from crawler.feed.pages import Position
from crawler.normalise import created_at

NEWEST, OLDEST = "Newest", "Oldest"
# What `--nsfw` asks for as a browsingLevel mask (browsingLevel wins over nsfw, so a part may set it).
NSFW_MASK = {"None": 1, "Soft": 3, "Mature": 7, "X": 31, "true": 28, "false": 1}
# A chain that ends having listed this share of the cap is taken as capped: the API drops items after it
# cuts a page (hidden, removed), so a stream cut at N positions lists somewhat fewer than N items.
CAP_SHARE = 0.9
# The period windows a part may be listed in (Oldest: each starts that far back from the server's clock),
# shortest first: a longer window's chain stops where a shorter one's began.
WINDOWS = ("Day", "Week", "Month", "Year")


@dataclass(frozen=True, slots=True)
class Part:
    """One part of the query: a browsing-level mask and a media type; None keeps what the query asks.

    A part with a `period` is a window of its parent (only its Oldest chain pages); one with a `base_model`
    is one base model's images of its parent: neither is a division of the parent."""

    levels: int | None
    type: str | None
    base_model: str | None = None
    period: str | None = None

    @property
    def name(self) -> str:
        named = [f"browsingLevel={self.levels}" if self.levels is not None else "",
                 f"type={self.type}" if self.type is not None else "",
                 f"baseModels={self.base_model}" if self.base_model is not None else "",
                 f"period={self.period}" if self.period is not None else ""]
        return " ".join(n for n in named if n) or "all"

    @property
    def leaf(self) -> Part:
        """The part of the exhaustive tree this window or base-model part narrows."""
        return Part(self.levels, self.type)

    def settings(self, sort: str) -> dict[str, Any]:
        """Option overrides of this part's chain listed in `sort` order."""
        values: dict[str, Any] = {"sort": sort}
        if self.levels is not None:
            values["browsing_level"] = self.levels
        if self.type is not None:
            values["type"] = self.type
        if self.base_model is not None:
            values["base_model"] = [self.base_model]
        if self.period is not None:
            values["period"] = self.period
        return values

    def filters(self, cfg: CrawlConfig) -> dict[str, Any]:
        """The API filters that define this part (for a gap's report)."""
        return {k: v for k, v in cfg.query_summary().items() if k not in ("sort", "withMeta")}


def root_levels(cfg: CrawlConfig) -> int:
    if cfg.browsing_level is not None:
        return cfg.browsing_level
    return NSFW_MASK.get(cfg.nsfw or "false", 1)  # neither: the API lists PG only


def children(part: Part, cfg: CrawlConfig) -> list[Part]:
    """Disjoint parts whose union is `part` (levels one bit at a time, then media type); [] if indivisible."""
    levels = part.levels if part.levels is not None else root_levels(cfg)
    bits = [1 << n for n in range(5) if levels & (1 << n)]
    if len(bits) > 1:
        return [Part(bit, part.type) for bit in bits]
    if part.type is None and cfg.type is None:
        return [Part(part.levels, t) for t in TYPES]
    return []


def windows(part: Part, cfg: CrawlConfig) -> list[Part]:
    """The period windows of an indivisible part, shortest first: only those narrower than the query's period."""
    wider = WINDOWS.index(cfg.period) if cfg.period in WINDOWS else len(WINDOWS)
    return [Part(part.levels, part.type, None, w) for w in WINDOWS[:wider]]


def bases(part: Part, cfg: CrawlConfig) -> list[Part]:
    """One part per `--deep-base-models` name, unless the query already names its base models."""
    if cfg.base_model:
        return []
    return [Part(part.levels, part.type, b) for b in dict.fromkeys(cfg.deep_base_models)]


def tree(cfg: CrawlConfig) -> list[Part]:
    """Every part the proof may need, the whole query first, parents before children; then each indivisible
    part's windows and base-model parts (the chains exist up front; only those the proof needs page)."""
    parts = [Part(None, None)]
    for part in parts:  # grows while iterated: breadth first
        parts.extend(c for c in children(part, cfg) if c not in parts)
    for leaf in [p for p in parts if not children(p, cfg)]:
        parts.extend(windows(leaf, cfg) + bases(leaf, cfg))
    return parts


@dataclass(slots=True)
class Progress:
    """What one chain has listed: items and pages (over every run), its edge, and whether it ended."""

    sort: str
    listed: int = 0
    pages: int = 0
    edge: datetime | None = None  # the oldest createdAt listed (Newest), the newest (Oldest)
    ended: bool = False  # the API gave no next cursor
    whole: bool = False  # stopped having listed all it wants (Newest reached --since)
    start: datetime | None = None  # the other end: where a window's Oldest chain began

    def page(self, items: list[Any], last: bool) -> None:
        self.pages += 1
        self.listed += len(items)
        newest = self.sort == NEWEST
        for item in items:
            when = created_at(item) if isinstance(item, dict) else None
            if when is None:
                continue
            if self.edge is None or (when < self.edge if newest else when > self.edge):
                self.edge = when
            if self.start is None or (when > self.start if newest else when < self.start):
                self.start = when
        self.ended = self.ended or last

    def capped(self, cap: int, limit: int) -> bool:
        """Ended after about `cap` items: its pages could have held the cap, or it listed nearly as many."""
        return self.ended and (self.listed >= CAP_SHARE * cap or self.pages * limit >= cap)

    def to_record(self) -> dict[str, Any]:
        return {"listed": self.listed, "pages": self.pages, "edge": _iso(self.edge), "whole": self.whole,
                "ended": self.ended, "start": _iso(self.start)}

    def recorded(self, unsettled: list[datetime]) -> dict[str, Any]:
        """`to_record()` for a checkpoint while items this chain listed (but another chain queued) are not
        settled: the edge stops at the nearest of them, so it never vouches for an item that a kill could
        still lose, and an end is marked not `settled` (a rerun pages the chain again)."""
        edge = self.edge
        if unsettled and edge is not None:
            edge = max(edge, *unsettled) if self.sort == NEWEST else min(edge, *unsettled)
        return {**self.to_record(), "edge": _iso(edge), "settled": not unsettled}

    @classmethod
    def from_record(cls, sort: str, record: dict[str, Any] | None) -> Progress:
        """From a checkpoint written with `to_record()`'s fields; anything else is a fresh start, and so is
        an end recorded while an item it skipped as another chain's was still unsettled (`settled` False)."""
        if not record or not isinstance(record.get("listed"), int) or not isinstance(record.get("pages"), int):
            return cls(sort)
        ended = bool(record.get("end") or record.get("ended"))
        if ended and record.get("settled") is False:
            return cls(sort)
        return cls(sort, record["listed"], record["pages"], _time(record.get("edge")), ended,
                   record.get("whole") is True, _time(record.get("start")))


@dataclass(frozen=True, slots=True)
class Progressed(Position):
    """A page's next position that also carries its chain's progress into the page's checkpoint record.

    A deep chain's end is one with no cursor: to the checkpoint it is a position (a rerun would start
    from the top), while its progress says `ended`, so the proof does not page it again."""

    progress: tuple[tuple[str, Any], ...] = ()

    def to_record(self) -> dict[str, Any]:
        return {**Position.to_record(self), **dict(self.progress)}


def met(newest: Progress, oldest: Progress) -> bool:
    """The ascending chain passed the descending one's edge: strictly, so items sharing a createdAt at
    the edge cannot fall between them."""
    return newest.edge is not None and oldest.edge is not None and oldest.edge > newest.edge


def proven(newest: Progress, oldest: Progress, cap: int, limit: int) -> bool:
    """The part's listing is whole: the chains met, or one ended short of the cap (it listed everything)."""
    whole = [p for p in (newest, oldest) if p.whole or (p.ended and not p.capped(cap, limit))]
    return bool(whole) or met(newest, oldest)


@dataclass(frozen=True, slots=True)
class Gap:
    """A part no split could prove: nothing listed between `after` and `before` may have been seen."""

    part: str
    filters: dict[str, Any]
    after: str | None  # the newest createdAt the Oldest chain reached
    before: str | None  # the oldest createdAt the Newest chain reached
    listed_newest: int
    listed_oldest: int
    # Base models whose own parts were proven whole: only images of another or no base model may be missing.
    except_base_models: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        return {"partition": self.part, "filters": self.filters, "created_after": self.after,
                "created_before": self.before, "listed_newest": self.listed_newest,
                "listed_oldest": self.listed_oldest, "except_base_models": list(self.except_base_models)}

    def describe(self) -> str:
        but = (f" but images of base model {', '.join(self.except_base_models)}" if self.except_base_models else "")
        return (f"{self.part}: nothing{but} proven between {self.after or '?'} and {self.before or '?'} "
                f"({self.listed_newest} listed newest first, {self.listed_oldest} oldest first)")


def gap(part: Part, cfg: CrawlConfig, newest: Progress, oldest: Progress) -> Gap:
    return Gap(part.name, part.filters(cfg), _iso(oldest.edge), _iso(newest.edge), newest.listed, oldest.listed)


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


@dataclass(slots=True)
class Outcome:
    """What a proof found: gaps, and how much it cost."""

    gaps: list[Gap] = field(default_factory=list)
    proven: list[str] = field(default_factory=list)
    chains: int = 0  # chains that paged (or were resumed) in this proof
    split: int = 0  # parts that were split
