"""The catalogue at one moment: its records and the filtered, sorted feeds the API pages through.

Pure: a `Snapshot` never changes after it is built (the catalogue swaps in a new one to grow), so
server threads may share it; the caches it fills lazily hold only values derived from its records.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass, field

from crawler.simulator.items import NEWEST_MS, Record, World
from crawler.simulator.model_index import ModelIndex
from crawler.simulator.query import PERIODS, Filters
from crawler.simulator.tags import tag_ids

_MAX_SELECTIONS = 64


@dataclass(slots=True)
class Selection:
    """One filtered, sorted feed, hidden records included: cursors are offsets into it."""

    records: tuple[Record, ...]
    _positions: dict[int, int] | None = field(default=None)

    def position(self, image_id: int) -> int | None:
        if self._positions is None:
            self._positions = {r.item["id"]: i for i, r in enumerate(self.records)}
        return self._positions.get(image_id)


class Snapshot:
    """The catalogue at one moment, with the sorted feeds and filtered selections derived from it."""

    __slots__ = ("records", "by_id", "by_uuid", "items", "newest_ms", "_seed", "_world", "_orders", "_selections",
                 "_models")

    def __init__(self, records: tuple[Record, ...], seed: int, world: World) -> None:
        self.records = records  # newest first
        self.by_id = {r.item["id"]: r for r in records}
        self.by_uuid = {r.uuid: r for r in records if not r.hidden}
        self.items = [r.item for r in records if not r.hidden]
        self.newest_ms = records[0].created_ms if records else NEWEST_MS
        self._seed = seed
        self._orders: dict[str, tuple[Record, ...]] = {}
        self._selections: OrderedDict[Filters, Selection] = OrderedDict()
        self._world = world
        self._models: ModelIndex | None = None

    def model_index(self) -> ModelIndex:
        # Two threads may both build it; the results are equal, so the race is harmless.
        if self._models is None:
            self._models = ModelIndex(self._world, self.records, self._seed, self.newest_ms)
        return self._models

    def select(self, filters: Filters) -> Selection:
        selections = self._selections
        found = selections.get(filters)
        if found is not None:
            return found
        days = PERIODS[filters.period]
        since = self.newest_ms - days * 86_400_000 if days else None
        chosen = Selection(tuple(r for r in self._order(filters.sort) if _matches(r, filters, since)))
        selections[filters] = chosen
        if len(selections) > _MAX_SELECTIONS:
            selections.popitem(last=False)
        return chosen

    def _order(self, sort: str) -> tuple[Record, ...]:
        order = self._orders.get(sort)
        if order is None:
            order = self._orders[sort] = _sorted(self.records, sort, self._seed)
        return order


def _sorted(records: tuple[Record, ...], sort: str, seed: int) -> tuple[Record, ...]:
    # `records` is newest first, and Python's sort is stable, so ties keep newest first.
    if sort == "Newest":
        return records
    if sort == "Oldest":
        return records[::-1]
    if sort == "Random":
        shuffled = list(records)
        random.Random(f"{seed}:random").shuffle(shuffled)
        return tuple(shuffled)
    if sort == "Most Comments":
        return tuple(sorted(records, key=lambda r: -r.item["stats"]["commentCount"]))
    if sort == "Most Collected":
        return tuple(sorted(records, key=lambda r: -r.collected))
    return tuple(sorted(records, key=_reactions))


def _reactions(record: Record) -> int:
    s = record.item["stats"]
    return -int(s["likeCount"] + s["heartCount"] + s["laughCount"] + s["cryCount"])


def _matches(record: Record, f: Filters, since_ms: int | None) -> bool:
    item = record.item
    if not item["browsingLevel"] & f.levels:
        return False
    if since_ms is not None and record.created_ms < since_ms:
        return False
    if f.username is not None and item["username"].lower() != f.username:
        return False
    if f.user_id is not None and record.user_id != f.user_id:
        return False
    if f.post_id is not None and item["postId"] != f.post_id:
        return False
    if f.model_id is not None and f.model_id not in record.model_ids:
        return False
    if f.model_version_id is not None and f.model_version_id not in item["modelVersionIds"]:
        return False
    if f.image_id is not None and item["id"] != f.image_id:
        return False
    if f.base_models is not None and item["baseModel"] not in f.base_models:
        return False
    if f.tag_ids is not None and not tag_ids(record) & f.tag_ids:
        return False
    return f.media_type is None or item["type"] == f.media_type
