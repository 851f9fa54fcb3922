"""state/fold.py on its own: the last record of an image is its state; a durable marker decides which
done records need a re-check and which checkpoint may be trusted; refs, uuids and high-water marks are
kept per query. Records are fed in order with made-up offsets, as `resume.load` feeds them.
"""

from __future__ import annotations

import pytest

from crawler.state.fold import ResumeState

pytestmark = pytest.mark.timeout(30)


def image(ident, status, **more):  # type: ignore[no-untyped-def]
    return {"kind": "image", "id": ident, "status": status, **more}


def done(ident, path=None, **more):  # type: ignore[no-untyped-def]
    return image(ident, "done", uuid=f"u{ident}", path=path or f"images/{ident}.jpeg", sha256=f"h{ident}",
                 item={"id": ident, "big": "x" * 100}, **more)


def checkpoint(query, page, cursor, end=False):  # type: ignore[no-untyped-def]
    return {"kind": "checkpoint", "query": query, "page": page, "cursor": cursor, "end": end}


def durable(upto):  # type: ignore[no-untyped-def]
    return {"kind": "durable", "upto": upto, "files": 1, "fsync": True}


def fold(records, models=False):  # type: ignore[no-untyped-def]
    state = ResumeState(refs=set() if models else None, by_uuid={} if models else None)
    for offset, record in enumerate(records):
        state.feed(offset * 10, record)
    return state


def test_the_last_record_of_an_image_is_its_state():
    state = fold([done(1), image(1, "failed", reason="http-500"), image(2, "failed", reason="x"), done(2),
                  image(3, "gone"), done(3), done(4), image(4, "gone"), image(5, "failed", reason="y"),
                  image(5, "gone"), image(6, "gone"), image(6, "failed", reason="z")])
    assert set(state.done) == {2, 3}
    assert set(state.gone) == {4, 5}
    assert set(state.failed) == {1, 6} and state.failed[1]["reason"] == "http-500"
    assert state.records == 12


def test_an_image_without_a_key_or_a_status_changes_nothing():
    state = fold([{"kind": "image", "status": "done"}, {"kind": "image", "id": True, "status": "done"},
                  {"kind": "image", "id": 1, "status": 3}, {"kind": "image", "id": 1, "status": "odd"},
                  {"kind": "image", "uuid": "abc", "status": "done"}])
    assert set(state.done) == {"abc"} and not state.gone and not state.failed
    assert state.records == 5


def test_without_markers_nothing_is_unverified_and_the_last_checkpoint_counts():
    state = fold([checkpoint("q", 1, "a"), done(1), checkpoint("q", 2, "b"), checkpoint("other", 1, "z")])
    state.for_query("q")
    assert state.unverified == [] and state.durable_upto is None
    assert state.checkpoint["cursor"] == "b" and state.resume_position()["cursor"] == "b"
    assert state.checkpoint_of("other")["cursor"] == "z" and state.checkpoint_of("none") is None
    assert state.checkpoints["q"] == [(20, checkpoint("q", 2, "b"))]  # only the last is held


def test_done_records_past_the_last_marker_are_unverified_and_kept_small():
    state = fold([done(1), done(2), durable(20), done(3, path="images/3.jpeg"), done(4)])
    state.for_query("q")
    assert state.unverified == [{"id": 3, "uuid": "u3", "path": "images/3.jpeg", "sha256": "h3"},
                                {"id": 4, "uuid": "u4", "path": "images/4.jpeg", "sha256": "h4"}]
    assert state.durable_upto == 20 and set(state.done) == {1, 2, 3, 4}


def test_a_marker_covers_records_before_its_offset_only():
    # The marker at offset 30 vouches for bytes before 20: the record at offset 20 stays unverified.
    state = fold([done(1), done(2), done(3), durable(20)])
    assert [r["id"] for _o, r in state.tail] == [3]
    state.feed(40, durable(40))
    assert state.tail == [] and state.for_query("q").unverified == []


def test_a_checkpoint_past_the_last_marker_is_not_trusted():
    state = fold([durable(0), checkpoint("q", 1, "a"), done(1), checkpoint("q", 2, "b"), durable(30),
                  checkpoint("q", 3, "c"), done(2), checkpoint("q", 4, "d")])
    assert state.for_query("q").checkpoint["cursor"] == "a"  # offsets 10 and 30: only 10 < 30
    state.feed(80, durable(80))
    assert state.checkpoint_of("q")["cursor"] == "d"
    # Once a marker covers them, earlier trusted checkpoints are dropped: one trusted plus the pending.
    assert [r["cursor"] for _o, r in state.checkpoints["q"]] == ["d"]


def test_before_the_first_marker_only_the_last_checkpoint_is_held_and_none_is_trusted():
    state = fold([checkpoint("q", 1, "a"), checkpoint("q", 2, "b"), durable(10)])
    assert state.checkpoint_of("q") is None  # "b" (offset 10) is past what the marker vouches for
    assert [r["cursor"] for _o, r in state.checkpoints["q"]] == ["b"]


def test_markers_keep_one_trusted_checkpoint_and_every_later_one():
    state = fold([durable(0), checkpoint("q", 1, "a"), checkpoint("q", 2, "b"), durable(25),
                  checkpoint("q", 3, "c")])
    assert [r["cursor"] for _o, r in state.checkpoints["q"]] == ["b", "c"]
    assert state.checkpoint_of("q")["cursor"] == "b"


def test_an_ended_feed_resumes_from_the_start():
    state = fold([checkpoint("q", 9, None, end=True)]).for_query("q")
    assert state.checkpoint["end"] and state.resume_position() is None
    assert state.resume_position("q") is None and state.resume_position("absent") is None
    state = fold([checkpoint("q", 2, "c"), checkpoint("p", 1, "x")]).for_query("q")
    assert state.resume_position("p")["cursor"] == "x"


def test_forget_makes_a_done_image_wanted_again():
    state = fold([done(1), done(2)])
    state.forget({"id": 1})
    state.forget({"kind": "image"})  # no key: nothing
    assert set(state.done) == {2}


def test_model_crawls_index_sources_and_uuids():
    state = fold([done(1, source="mv:7"), {"kind": "ref", "id": 1, "source": "mv:8"}, {"kind": "ref", "source": "mv:9"},
                  {"kind": "ref", "id": 2, "source": 5}, image("u-only", "done", uuid="u-only", source="mv:7"),
                  {"kind": "image", "uuid": "u9", "status": "gone", "source": 3}], models=True)
    assert state.refs == {(1, "mv:7"), (1, "mv:8"), ("u-only", "mv:7")}
    assert state.by_uuid == {"u1": 1}


def test_a_feed_crawl_keeps_no_refs():
    state = fold([done(1, source="mv:7"), {"kind": "ref", "id": 1, "source": "mv:8"}])
    assert state.refs is None and state.by_uuid is None and set(state.done) == {1}


def test_high_water_marks_are_per_query_and_the_last_wins():
    state = fold([{"kind": "hwm", "query": "q", "created_at": "2026-01-01"},
                  {"kind": "hwm", "query": "q", "created_at": "2026-02-01"},
                  {"kind": "hwm", "query": "p", "created_at": "2025-01-01"},
                  {"kind": "hwm", "query": "q", "created_at": 5}, {"kind": "hwm", "created_at": "2027"},
                  {"kind": "checkpoint", "query": 3, "cursor": "x"}])
    assert state.for_query("q").high_water == "2026-02-01"
    assert state.high_waters == {"q": "2026-02-01", "p": "2025-01-01"} and state.checkpoints == {}
    assert fold([]).for_query("q").high_water is None
