"""crawler.run.proof over an in-memory feed: period windows close a gap by meeting, unless one moved.

One image a day for 100 days, one level and one type, a cap of 25: Newest lists days 99..75, Oldest
0..24, and the windows' Oldest chains start at days 20 (Year), 40 (Month), 60 (Week), 95 (Day).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from crawler.config import settings as config
from crawler.feed import deep
from crawler.feed.deep import NEWEST, OLDEST, Progress
from crawler.feed.pages import Page, Position
from crawler.run.proof import Proof
from crawler.stops import Stop

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CAP, LIMIT = 25, 5
STARTS = {"Year": 20, "Month": 40, "Week": 60, "Day": 95}


def items(days: list[int]) -> list[dict]:
    return [{"id": d, "createdAt": (T0 + timedelta(days=d)).isoformat().replace("+00:00", "Z")} for d in days]


def listing(part: deep.Part, sort: str) -> list[int]:
    if part.period is not None:
        start = STARTS[part.period]
        return list(range(start, min(100, start + CAP)))
    return list(range(99, 99 - CAP, -1)) if sort == NEWEST else list(range(CAP))


async def prove(tmp_path, moved: str | None = None) -> tuple[Proof, list[int]]:
    cfg = config.build(tmp_path / "out", {"browsing_level": "1", "type": "image", "depth_cap": str(CAP),
                                          "limit": str(LIMIT)}, None, {})
    cfg = dataclasses.replace(cfg, deep_base_models=())
    parts = deep.tree(cfg)
    paged: list[int] = []

    async def runner(c: int, watch) -> tuple[Stop, str] | None:
        days = listing(parts[c // 2], NEWEST if c % 2 == 0 else OLDEST)
        paged.append(c)
        for n in range(0, len(days), LIMIT):
            last = n + LIMIT >= len(days)
            if watch(Page(n // LIMIT + 1, items(days[n:n + LIMIT]), None if last else Position("next"))):
                return None
        return Stop.FEED_ENDED, "the feed ended"

    async def first_page(c: int) -> list[dict]:
        days = listing(parts[c // 2], OLDEST)[:LIMIT]
        return items([d + 1 for d in days] if parts[c // 2].period == moved else days)

    progress = [Progress(NEWEST if c % 2 == 0 else OLDEST) for c in range(2 * len(parts))]
    proof = Proof(parts, [cfg] * len(progress), progress, runner, first_page=first_page)
    await proof.run()
    return proof, paged


async def test_windows_that_overlap_end_to_end_prove_the_part_by_meeting(tmp_path):
    proof, paged = await prove(tmp_path)
    assert proof.outcome.gaps == [] and proof.outcome.proven == ["all"] and proof.halt is None
    # Root Newest and Oldest, then only the windows' Oldest chains (odd numbers), never a Newest one.
    assert paged[:2] == [0, 1] and all(c % 2 == 1 for c in paged[2:]) and len(paged) == 6


async def test_a_window_that_moved_while_it_paged_is_not_trusted_and_its_stretch_is_a_gap(tmp_path):
    proof, _paged = await prove(tmp_path, moved="Month")
    [gap] = proof.outcome.gaps
    assert (gap.after, gap.before) == ((T0 + timedelta(days=44)).isoformat(), (T0 + timedelta(days=60)).isoformat())
    assert gap.except_base_models == ()
