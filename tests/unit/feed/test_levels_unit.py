"""feed/levels.py on its own: which queries ask for mature levels, and when the warning is due (once)."""

from __future__ import annotations

import pytest

from crawler.feed.levels import PAGES_JUDGED, LevelWatch, asks_mature, causes


@pytest.mark.parametrize(("params", "mature"), [
    ([("browsingLevel", "31")], True), ([("browsingLevel", "3")], False), ([("browsingLevel", "4")], True),
    ([("nsfw", "X")], True), ([("nsfw", "true")], True), ([("nsfw", "Soft")], False), ([], False),
    ([("nsfw", "X"), ("browsingLevel", "1")], False),  # browsingLevel wins, as at the API
])
def test_asks_mature(params, mature):
    assert asks_mature(params) is mature


def test_causes_name_the_key_the_site_and_the_region():
    assert causes("civitai.green", False).split("; ")[0].startswith("no API key")
    assert "civitai.green is SFW only" in causes("civitai.green", True)
    assert "--site red" in causes("civitai.com", True)
    assert causes("127.0.0.1", True) == "the region (restricted regions get PG and PG-13 only)"


def test_warns_once_after_the_first_pages_hold_no_mature_item():
    watch = LevelWatch(True, "the region")
    sfw = [{"nsfwLevel": "None"}, {"nsfwLevel": "Soft"}, {"nsfwLevel": 2}]
    said = [watch.observe(sfw) for _ in range(PAGES_JUDGED + 2)]
    assert said[:PAGES_JUDGED - 1] == [None] * (PAGES_JUDGED - 1)
    assert said[PAGES_JUDGED - 1] is not None and "the region" in said[PAGES_JUDGED - 1]
    assert said[PAGES_JUDGED:] == [None, None]
    assert watch.mix == {"None": len(said), "Soft": 2 * len(said)}  # nsfwLevel 2 is the PG-13 bit


def test_no_warning_when_a_mature_item_came_or_none_was_asked_and_a_short_feed_is_judged_at_its_end():
    assert all(LevelWatch(True, "").observe([{"nsfwLevel": "X"}]) is None for _ in range(PAGES_JUDGED))
    assert all(LevelWatch(False, "").observe([{"nsfwLevel": "None"}]) is None for _ in range(PAGES_JUDGED))
    assert LevelWatch(True, "").observe([{"nsfwLevel": "None"}], last=True) is not None
    assert LevelWatch(True, "").observe([], last=True) is None  # an empty feed says nothing about levels
