"""crawler.feed.deep: the parts of a query, when two chains prove a part whole, and what a gap records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crawler.config import settings as config
from crawler.feed import deep
from crawler.feed.deep import NEWEST, OLDEST, Part, Progress

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def cfg(tmp_path, **values):
    return config.build(tmp_path / "out", {k: str(v) for k, v in values.items()}, None, {})


def items(*days: int) -> list[dict]:
    return [{"id": d, "createdAt": (T0 + timedelta(days=d)).isoformat().replace("+00:00", "Z")} for d in days]


def test_the_tree_splits_levels_one_bit_at_a_time_then_media_type(tmp_path):
    parts = [p for p in deep.tree(cfg(tmp_path, browsing_level=31)) if p.period is None and p.base_model is None]
    assert parts[0] == Part(None, None) and len(parts) == 1 + 5 + 5 * 3
    assert deep.children(parts[0], cfg(tmp_path, browsing_level=31)) == [Part(b, None) for b in (1, 2, 4, 8, 16)]
    assert deep.children(Part(4, None), cfg(tmp_path)) == [Part(4, t) for t in ("image", "video", "audio")]
    assert deep.children(Part(4, "video"), cfg(tmp_path)) == []


def test_a_query_of_one_level_and_one_type_cannot_be_split(tmp_path):
    assert deep.children(Part(None, None), cfg(tmp_path, browsing_level=1, type="image")) == []
    # Without --browsing-level the API lists PG only (one bit); --nsfw X means every level.
    assert [p.levels for p in deep.tree(cfg(tmp_path))[1:4]] == [None, None, None]
    assert deep.children(Part(None, None), cfg(tmp_path, nsfw="X")) == [Part(b, None) for b in (1, 2, 4, 8, 16)]


def test_an_indivisible_part_gets_period_windows_then_base_model_parts_which_are_not_divisions(tmp_path):
    one = cfg(tmp_path, browsing_level=1, type="image")
    parts = deep.tree(one)
    assert parts[:5] == [Part(None, None)] + [Part(None, None, None, w) for w in ("Day", "Week", "Month", "Year")]
    assert parts[5:] == [Part(None, None, b) for b in one.deep_base_models]
    assert parts[6].settings(NEWEST) == {"sort": "Newest", "base_model": ["Pony"]}
    assert parts[4].name == "period=Year" and parts[4].leaf == Part(None, None)
    # A query that names its base models or a period gets no base split, and only narrower windows.
    named = deep.tree(cfg(tmp_path, browsing_level=1, type="image", base_model="Pony", period="Month"))
    assert named == [Part(None, None), Part(None, None, None, "Day"), Part(None, None, None, "Week")]


def test_a_part_names_its_chain_settings(tmp_path):
    assert Part(8, "video").settings(OLDEST) == {"sort": "Oldest", "browsing_level": 8, "type": "video"}
    assert Part(8, "video").name == "browsingLevel=8 type=video" and Part(None, None).name == "all"


def test_progress_keeps_the_edge_each_sort_reached():
    newest, oldest = Progress(NEWEST), Progress(OLDEST)
    newest.page(items(30, 29, 28), last=False)
    oldest.page(items(1, 2, 3), last=False)
    assert (newest.edge, oldest.edge) == (T0 + timedelta(days=28), T0 + timedelta(days=3))
    assert (newest.listed, newest.pages, newest.ended) == (3, 1, False)


def test_chains_meet_only_once_the_oldest_passes_the_newest_edge():
    newest, oldest = Progress(NEWEST), Progress(OLDEST)
    newest.page(items(9, 8, 7), last=False)
    oldest.page(items(1, 2, 7), last=False)
    assert not deep.met(newest, oldest)  # same createdAt at the edge: a tie could hide an item between them
    oldest.page(items(8), last=False)
    assert deep.met(newest, oldest) and deep.proven(newest, oldest, cap=100, limit=3)


@pytest.mark.parametrize(("listed", "pages", "capped"), [(100, 34, True), (95, 32, True), (40, 14, False)])
def test_a_chain_that_ends_near_the_cap_is_capped(listed, pages, capped):
    chain = Progress(NEWEST, listed=listed, pages=pages, ended=True)
    assert chain.capped(cap=100, limit=3) is capped
    assert deep.proven(chain, Progress(OLDEST), cap=100, limit=3) is not capped
    assert not Progress(NEWEST, listed=500, pages=200).capped(cap=100, limit=3)  # not ended: not capped yet


def test_progress_survives_a_checkpoint_and_anything_else_is_a_fresh_start():
    chain = Progress(OLDEST)
    chain.page(items(1, 2), last=True)
    back = Progress.from_record(OLDEST, {**chain.to_record(), "end": True, "cursor": None})
    assert back == chain
    assert Progress.from_record(OLDEST, {"end": True, "cursor": None}) == Progress(OLDEST)  # a reset checkpoint
    assert Progress.from_record(NEWEST, None) == Progress(NEWEST)


def test_a_gap_names_the_part_its_range_and_the_counts(tmp_path):
    newest, oldest = Progress(NEWEST), Progress(OLDEST)
    newest.page(items(30, 29), last=True)
    oldest.page(items(1, 2), last=True)
    part_cfg = cfg(tmp_path, browsing_level=1, type="image", sort="Newest")
    gap = deep.gap(Part(None, None), part_cfg, newest, oldest).to_record()
    assert gap["filters"] == {"browsingLevel": "1", "type": "image"}
    assert (gap["created_after"], gap["created_before"]) == ((T0 + timedelta(days=2)).isoformat(),
                                                             (T0 + timedelta(days=29)).isoformat())
    assert (gap["listed_newest"], gap["listed_oldest"]) == (2, 2)


def test_a_recorded_edge_never_passes_an_item_another_chain_has_not_settled():
    newest, oldest = Progress(NEWEST), Progress(OLDEST)
    newest.page(items(30, 20, 10), last=False)
    oldest.page(items(1, 5, 9), last=True)
    day = lambda d: T0 + timedelta(days=d)
    assert newest.recorded([day(25)])["edge"] == day(25).isoformat()  # not past day 25, still in flight
    assert newest.recorded([])["edge"] == day(10).isoformat() and newest.recorded([])["settled"]
    record = {**oldest.recorded([day(3), day(7)]), "end": False, "cursor": None}
    assert record["edge"] == day(3).isoformat() and record["settled"] is False
    # An end recorded while such an item was pending is no end: the chain is paged again from the top.
    assert Progress.from_record(OLDEST, record) == Progress(OLDEST)
    assert Progress.from_record(OLDEST, {**oldest.recorded([]), "cursor": None}).ended
