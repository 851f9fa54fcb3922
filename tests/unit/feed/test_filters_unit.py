"""feed/filters.py on its own: each rule's reason, its boundary, and what a missing field means.

Items are the simulator catalogue's own (the API's shape); no network is needed for a pure decision.
"""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from conftest import crawl_config

from crawler import normalise as N
from crawler.feed.filters import ItemFilter
from crawler.simulator import Catalogue, SimConfig

ITEMS = Catalogue(SimConfig(images=200, seed=61)).items


def _without(item: dict, *path: str) -> dict:
    item = copy.deepcopy(item)
    target = item
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return item


def test_no_rule_takes_everything_and_is_inactive():
    assert not ItemFilter().active
    assert all(ItemFilter().reason(item) is None for item in ITEMS)


@pytest.mark.parametrize(("rule", "why", "value"), [
    ("min_width", "too-narrow", lambda i: i["width"]),
    ("min_height", "too-short", lambda i: i["height"]),
    ("min_reactions", "few-reactions", N.reactions),
])
def test_a_minimum_keeps_the_threshold_itself_and_names_what_it_skips(rule, why, value):
    values = sorted({value(i) for i in ITEMS})
    cut = values[len(values) // 2]
    rule_filter = ItemFilter(**{rule: cut})
    assert rule_filter.active
    for item in ITEMS:
        assert rule_filter.reason(item) == (None if value(item) >= cut else why), item["id"]
    assert any(value(i) == cut for i in ITEMS)  # the boundary was exercised


def test_max_nsfw_level_skips_ranks_above_it_and_unknown_levels():
    soft = ItemFilter(max_nsfw_rank=N.NSFW_LEVELS.index("Soft"))
    kept = {i["nsfwLevel"] for i in ITEMS if soft.reason(i) is None}
    skipped = {i["nsfwLevel"] for i in ITEMS if soft.reason(i) == "nsfw-level"}
    assert kept == {"None", "Soft"} and skipped == {"Mature", "X"}
    pg = next(i for i in ITEMS if i["nsfwLevel"] == "None")
    assert soft.reason(_without(pg, "nsfwLevel")) is None  # the browsingLevel says PG
    assert soft.reason(_without(_without(pg, "nsfwLevel"), "browsingLevel")) == "nsfw-level"


def test_require_meta_skips_items_without_a_prompt():
    with_prompt = next(i for i in ITEMS if N.prompt(i))
    rule = ItemFilter(require_meta=True)
    assert rule.reason(with_prompt) is None
    assert rule.reason(_without(with_prompt, "meta")) == "no-prompt"
    assert rule.reason(_without(with_prompt, "meta", "prompt")) == "no-prompt"


def test_exclude_user_ignores_case():
    rule = ItemFilter(exclude_users=frozenset({ITEMS[0]["username"].lower()}))
    assert rule.reason({**ITEMS[0], "username": ITEMS[0]["username"].upper()}) == "excluded-user"
    assert rule.reason(next(i for i in ITEMS if i["username"] != ITEMS[0]["username"])) is None


def test_since_is_inclusive_until_is_exclusive_and_undated_items_are_skipped():
    item = ITEMS[0]
    when = N.created_at(item)
    assert ItemFilter(since=when).reason(item) is None
    assert ItemFilter(since=when + timedelta(milliseconds=1)).reason(item) == "before-since"
    assert ItemFilter(until=when).reason(item) == "after-until"
    assert ItemFilter(until=when + timedelta(milliseconds=1)).reason(item) is None
    assert ItemFilter(since=when).reason(_without(item, "createdAt")) == "no-date"


def test_the_first_failing_rule_is_the_reason():
    item = {**ITEMS[0], "width": 1, "height": 1}
    assert ItemFilter(min_width=2, min_height=2).reason(item) == "too-narrow"


def test_past_since_reads_the_last_dated_item_of_a_newest_first_page():
    page = sorted(ITEMS[:20], key=lambda i: i["createdAt"], reverse=True)
    oldest = N.created_at(page[-1])
    undated_tail = [*page, {"id": 1}]
    assert ItemFilter(since=oldest + timedelta(seconds=1)).past_since(undated_tail)
    assert not ItemFilter(since=oldest).past_since(undated_tail)
    assert not ItemFilter().past_since(page)


def test_from_config_maps_every_flag(tmp_path):
    cfg = crawl_config(tmp_path, "http://127.0.0.1:1/api/v1", require_meta=True, min_width=512, min_height=640,
                       min_reactions=3, max_nsfw_level="Mature", exclude_user=["Alice", "bob"],
                       since="2025-01-01", until="2025-02-01T00:00:00Z")
    rule = ItemFilter.from_config(cfg)
    assert rule == ItemFilter(require_meta=True, min_width=512, min_height=640, min_reactions=3, max_nsfw_rank=2,
                              exclude_users=frozenset({"alice", "bob"}), since=N.parse_time("2025-01-01"),
                              until=N.parse_time("2025-02-01T00:00:00Z"))


def test_an_excluded_all_digit_username_sent_as_a_number_is_still_excluded():
    rule = ItemFilter(exclude_users=frozenset({"20240101"}))
    assert rule.reason({"username": 20240101}) == "excluded-user"
    assert rule.reason({"username": None}) is None
