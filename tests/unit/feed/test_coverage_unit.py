"""crawler.feed.coverage: the holes a part's chains and period windows leave, and a window that moved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crawler.feed import coverage
from crawler.feed.deep import NEWEST, OLDEST, Progress

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CAP, LIMIT = 3, 3


def day(d: int) -> datetime:
    return T0 + timedelta(days=d)


def items(*days: int) -> list[dict]:
    return [{"id": d, "createdAt": day(d).isoformat().replace("+00:00", "Z")} for d in days]


def chain(sort: str, *days: int, ended: bool = True) -> Progress:
    progress = Progress(sort)
    progress.page(items(*days), last=ended)
    return progress


def test_two_capped_chains_that_did_not_meet_leave_one_hole_between_their_edges():
    newest, oldest = chain(NEWEST, 30, 29, 28), chain(OLDEST, 1, 2, 3)
    [hole] = coverage.holes(newest, oldest, [], CAP, LIMIT)
    assert (hole.after, hole.before, hole.listed_oldest, hole.listed_newest) == (day(3), day(28), 3, 3)


def test_a_window_starting_inside_the_gap_narrows_it_and_one_bridging_it_closes_it():
    newest, oldest = chain(NEWEST, 30, 29, 28), chain(OLDEST, 1, 2, 3)
    middle = chain(OLDEST, 10, 11, 12)  # a Year window: starts inside the gap, capped
    holes = coverage.holes(newest, oldest, [middle], CAP, LIMIT)
    assert [(h.after, h.before) for h in holes] == [(day(3), day(10)), (day(12), day(28))]
    bridge = chain(OLDEST, 2, 15, 29)  # starts inside what Oldest listed, passes Newest's edge
    assert coverage.holes(newest, oldest, [middle, bridge], CAP, LIMIT) == []
    touching = chain(OLDEST, 3, 15, 28)  # joins only at the edges' own dates: a tie could hide an item there
    assert len(coverage.holes(newest, oldest, [touching], CAP, LIMIT)) == 2


def test_a_window_that_ended_short_covers_everything_after_its_start():
    newest = Progress(NEWEST, listed=30, pages=10, edge=day(28), ended=True, start=day(40))
    oldest = Progress(OLDEST, listed=30, pages=10, edge=day(3), ended=True, start=day(1))
    assert len(coverage.holes(newest, oldest, [], cap=30, limit=3)) == 1
    assert coverage.holes(newest, oldest, [chain(OLDEST, 2, 20)], cap=30, limit=3) == []  # listed 2: short


def test_a_window_stops_paging_once_it_reaches_newest_or_a_shorter_window_or_is_the_oldest_chain_again():
    newest, oldest = chain(NEWEST, 30, 29, 28), chain(OLDEST, 1, 2, 3)
    week = chain(OLDEST, 20, 21, ended=False)
    assert not coverage.reached(chain(OLDEST, 10, 12, ended=False), newest, oldest, [week])
    assert coverage.reached(chain(OLDEST, 10, 22, ended=False), newest, oldest, [week])
    assert coverage.reached(chain(OLDEST, 25, 29, ended=False), newest, oldest, [])
    assert coverage.reached(chain(OLDEST, 1, 2, ended=False), newest, oldest, [])  # the window holds it all


def test_a_window_whose_first_page_starts_later_when_asked_again_has_drifted():
    window = chain(OLDEST, 10, 11, 12)
    assert not coverage.drifted(window, items(10, 11, 12))
    assert coverage.drifted(window, items(11, 12, 13))  # day 10 left the window while the chain paged
    assert coverage.drifted(window, None) and coverage.drifted(window, [])
