"""Cursor handling (hypothesis): a feed position survives its checkpoint record unchanged, whatever the
cursor holds (opaque strings: "offset|ms", "feed:<ms>:<id>", digits, unicode), and a record from another
tool or a damaged line reads as the first page, never raises."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from crawler.feed.pages import Position

cursors = st.one_of(st.none(), st.text(max_size=40),
                    st.builds(lambda a, b: f"{a}|{b}", st.integers(0, 10**7), st.integers(0, 2**45)),
                    st.builds(lambda a, b: f"feed:{a}:{b}", st.integers(0, 2**45), st.integers(0, 10**9)))
queries = st.one_of(st.none(), st.lists(st.tuples(st.text(min_size=1, max_size=10), st.text(max_size=20)),
                                        min_size=1, max_size=5).map(tuple))


@given(cursors, queries)
def test_a_position_survives_its_checkpoint_record(cursor, next_query):
    position = Position(cursor=cursor, next_query=next_query)
    record = orjson.loads(orjson.dumps(position.to_record()))  # as written to and read from the manifest
    assert Position.from_record(record) == position


_any = st.one_of(st.none(), st.integers(), st.text(max_size=8), st.lists(st.integers(), max_size=3),
                st.lists(st.lists(st.text(max_size=3), max_size=3), max_size=3))


@given(st.dictionaries(st.sampled_from(["cursor", "next_query", "page", "other"]), _any, max_size=4))
def test_any_other_record_reads_as_some_position_without_raising(record):
    position = Position.from_record(record)
    assert position.cursor is None or isinstance(position.cursor, str)
