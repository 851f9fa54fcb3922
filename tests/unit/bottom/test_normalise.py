"""crawler.normalise: one reading of an API item whatever its age; never raises, never modifies the item."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crawler import normalise

# 2 shared cores under load: no per-example deadline, no slow-generation health check.
LOADED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(("level", "rank"), [
    ("None", 0), ("Soft", 1), ("Mature", 2), ("X", 3), (" x ", 3), ("mature", 2),
    ("XXX", None), ("8", None), ("", None),  # strings are level names only
    (0, 0),
    (1, 0), (2, 1), (4, 2), (8, 3), (16, 3),  # the browsing-level bitmask: PG, PG-13, R, X, XXX
    (6, 2), (3, 1), (31, 3),  # several bits: the highest wins
    (8.0, 3), (8.5, None), (-1, None), (True, None), ([8], None),
])
def test_nsfw_rank_of_every_form(level, rank):
    assert normalise.nsfw_rank({"nsfwLevel": level}) == rank
    assert normalise.nsfw_name({"nsfwLevel": level}) == (None if rank is None else normalise.NSFW_LEVELS[rank])


def test_browsing_level_is_read_only_when_nsfw_level_is_missing():
    assert normalise.nsfw_rank({"browsingLevel": 4}) == 2
    assert normalise.nsfw_rank({"browsingLevel": "8"}) == 3  # a digit string is a number here
    assert normalise.nsfw_rank({"nsfwLevel": None, "browsingLevel": 1}) == 0
    assert normalise.nsfw_rank({"nsfwLevel": -1, "browsingLevel": 4}) is None
    assert normalise.nsfw_rank({"nsfwLevel": "Soft", "browsingLevel": 16}) == 1
    assert normalise.nsfw_rank({}) is None


def test_reactions_sum_the_four_counts_only():
    stats = {"likeCount": 3, "heartCount": 2, "laughCount": 1, "cryCount": 4, "commentCount": 100, "dislikeCount": 7}
    assert normalise.reactions({"stats": stats}) == 10
    assert normalise.reactions({"stats": {"likeCount": "5", "heartCount": None, "cryCount": 2.0, "laughCount": True}}) == 7
    assert normalise.reactions({"stats": None}) == 0
    assert normalise.reactions({}) == 0


@pytest.mark.parametrize(("text", "when"), [
    ("2024-05-01T12:30:00.000Z", datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)),
    ("2024-05-01T12:30:00", datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)),  # naive: UTC
    (" 2024-05-01 ", datetime(2024, 5, 1, tzinfo=timezone.utc)),
    ("2024-05-01T14:30:00+02:00", datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)),
    ("yesterday", None), ("", None), ("2024-13-01", None),
])
def test_parse_time(text, when):
    got = normalise.parse_time(text)
    assert got == when
    if got is not None:
        assert got.utcoffset() is not None


def test_created_at_reads_only_strings():
    assert normalise.created_at({"createdAt": "2024-05-01T00:00:00+01:00"}) == datetime(2024, 4, 30, 23, tzinfo=timezone.utc)
    assert normalise.created_at({"createdAt": "2024-05-01T00:00:00+01:00"}).utcoffset() == timedelta(hours=1)
    assert normalise.created_at({"createdAt": 1714521600}) is None
    assert normalise.created_at({}) is None


def test_meta_unwraps_the_id_wrapper_but_not_a_flat_meta():
    inner = {"prompt": "a cat", "seed": 1}
    assert normalise.meta({"meta": {"id": 9, "meta": inner}}) == inner
    flat = {"prompt": "a dog", "meta": {"x": 1}}
    assert normalise.meta({"meta": flat}) == flat  # a flat meta that happens to hold a "meta" key
    assert normalise.meta({"meta": "text"}) is None
    assert normalise.meta({"meta": {"id": 9, "meta": None}}) is None  # wrapped null: no metadata (issue 14)


def test_prompt_is_none_when_blank_or_not_text():
    assert normalise.prompt({"meta": {"prompt": "a cat"}}) == "a cat"
    assert normalise.prompt({"meta": {"prompt": "   "}}) is None
    assert normalise.prompt({"meta": {"prompt": 5}}) is None
    assert normalise.prompt({"meta": None}) is None


def test_meta_fields_take_the_first_spelling_present_and_name_every_field():
    meta = {"CFG scale": 5, "cfgScale": 7, "Clip skip": 2, "negative_prompt": "n", "Size": "512x512"}
    got = normalise.meta_fields({"meta": meta})
    assert got == {"prompt": None, "negative_prompt": "n", "seed": None, "steps": None, "sampler": None,
                   "cfg_scale": 7, "clip_skip": 2, "size": "512x512"}
    assert normalise.meta_fields({}) == dict.fromkeys(normalise.META_FIELDS)


def test_integer_text_and_int_list():
    item = {"width": "832", "height": 1216.0, "name": "x", "tags": [1, "2", 3.5, None, True, 4]}
    assert normalise.integer(item, "width") == 832
    assert normalise.integer(item, "height") == 1216
    assert normalise.integer(item, "missing") is None
    assert normalise.integer({"n": " 7 "}, "n") == 7
    assert normalise.integer({"n": "-7"}, "n") is None
    assert normalise.text(item, "name") == "x" and normalise.text(item, "width") == "832"
    assert normalise.text(item, "height") is None
    assert normalise.int_list(item, "tags") == [1, 2, 4]
    assert normalise.int_list(item, "name") == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
fields = st.sampled_from(["nsfwLevel", "browsingLevel", "stats", "createdAt", "meta", "width", "tags", "name"])


@LOADED
@given(st.dictionaries(fields, json_values, max_size=6))
def test_any_item_reads_without_raising_or_changing(item):
    before = copy.deepcopy(item)
    assert normalise.nsfw_rank(item) in (None, 0, 1, 2, 3)
    assert normalise.nsfw_name(item) in (None, *normalise.NSFW_LEVELS)
    assert isinstance(normalise.reactions(item), int)
    created = normalise.created_at(item)
    assert created is None or created.tzinfo is not None
    found = normalise.meta(item)
    assert found is None or isinstance(found, dict)
    assert normalise.prompt(item) is None or normalise.prompt(item).strip()
    assert set(normalise.meta_fields(item)) == set(normalise.META_FIELDS)
    assert normalise.integer(item, "width") is None or isinstance(normalise.integer(item, "width"), int)
    assert all(type(v) is int for v in normalise.int_list(item, "tags"))
    assert item == before


@pytest.mark.parametrize(("meta", "want"), [
    (None, None),
    ({}, {}),
    ({"prompt": "a cat", "seed": 1}, {"prompt": "a cat", "seed": 1}),
    ({"id": 12, "meta": {"prompt": "a cat"}}, {"prompt": "a cat"}),  # withMeta without flatMeta (2026)
    ({"id": 12, "meta": None}, None),  # ... whose inner meta is null: no metadata, not {id, meta}
    ({"id": 12, "meta": {}}, {}),
    ({"workflow": '{"3": {}, "workflow": undefined}', "prompt": "p"}, {"workflow": '{"3": {}, "workflow": undefined}',
                                                                        "prompt": "p"}),  # kept as text
    ("not an object", None),
])
def test_meta_of_every_recorded_shape(meta, want):
    assert normalise.meta({"meta": meta}) == want


@pytest.mark.parametrize(("value", "want"), [("alice", "alice"), (20240101, "20240101"), (None, None), (True, None),
                                             (1.5, None)])
def test_username_is_text_even_when_sent_as_a_number(value, want):
    assert normalise.username({"username": value}) == want


def test_tags_are_names_of_tag_objects_or_strings():
    item = {"tags": [{"id": 4, "name": "anime"}, "cat", {"id": 5}, None, {"name": ""}]}
    assert normalise.tags(item) == ["anime", "cat"]
    assert normalise.tags({"tags": None}) == [] and normalise.tags({}) == []
