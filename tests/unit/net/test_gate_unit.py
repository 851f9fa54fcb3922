"""net/limits.py's promises stated exactly, without sockets: the hard cap of `rate` starts in any 1.02 s
(the sliding window, not only the leaky bucket), a pause that only ever extends, and a pause that
begins while a caller waits for capacity.

A start is timed in the same step in which `acquire` returns (no await in between), so the times
measured are the gate's own, even on a loaded machine.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import most_within

from crawler.net.limits import HostGate

pytestmark = pytest.mark.timeout(30)


async def _starts(gate: HostGate, seconds: float, callers: int = 30) -> list[float]:
    starts: list[float] = []
    deadline = time.monotonic() + seconds

    async def caller() -> None:
        while time.monotonic() < deadline:
            await gate.acquire()
            starts.append(time.monotonic())
            await asyncio.sleep(0)

    await asyncio.gather(*(caller() for _ in range(callers)))
    return starts


async def test_never_more_than_the_rate_in_any_1_02_seconds_and_close_to_it():
    # rate 200: the bucket holds a burst of 3 and would admit ~203 in 1.02 s; the window caps it at 200.
    rate = 200
    starts = await _starts(HostGate(rate), 1.6)
    assert most_within(starts, 1.02) <= rate
    # Spread over the second by the bucket, not let through in one clump each time the window frees.
    assert most_within(starts, 0.2) <= 0.2 * rate + 3 + 2
    assert len(starts) >= 0.9 * rate * 1.5, len(starts)


@pytest.mark.parametrize("rate", [2.5, 1.5])
async def test_a_fractional_rate_allows_its_floor_in_any_second(rate):
    gate = HostGate(rate)  # the bucket alone would start one every 1.02 / rate s: more than the floor
    starts = await _starts(gate, 1.0, callers=3)
    assert len(starts) >= 2
    assert most_within(starts, 1.02) <= int(rate)


async def test_callers_released_by_a_pause_still_keep_the_rate():
    rate = 20
    gate = HostGate(rate)
    gate.pause(0.2)
    began = time.monotonic()
    starts = await _starts(gate, 0.9, callers=40)  # all 40 wait on the pause, then on the rate
    assert min(starts) - began >= 0.2
    assert most_within(starts, 1.02) <= rate


async def test_a_pause_extends_but_never_shortens_and_holds_a_waiting_caller():
    gate = HostGate(1000)
    begin = time.monotonic()
    gate.pause(0.3)
    gate.pause(0.1)  # earlier: ignored
    gate.pause(-5)  # negative: ignored
    await gate.acquire()
    assert 0.3 <= time.monotonic() - begin < 0.7  # the pause asked for, not a floor of a second
    begin = time.monotonic()
    gate.pause(0.1)
    gate.pause(0.25)  # later: extends
    async with gate:
        pass
    assert 0.25 <= time.monotonic() - begin < 0.65
    begin = time.monotonic()
    gate.pause(0.0)  # nothing to wait for
    await gate.acquire()
    assert time.monotonic() - begin < 0.4


async def test_a_pause_that_begins_while_a_caller_waits_for_capacity_is_honoured():
    gate = HostGate(1)  # one start per 1.025 s
    await gate.acquire()
    waiting = asyncio.ensure_future(gate.acquire())  # blocked on the window for ~1 s
    await asyncio.sleep(0.3)
    paused_at = time.monotonic()
    gate.pause(1.2)  # ends after the window frees
    await waiting
    assert time.monotonic() - paused_at >= 1.2


def test_the_sizes_follow_the_rate():
    gate = HostGate(60)
    assert gate.rate == 60 and gate._sent.maxlen == 60 and gate._window == 1.025
    slow = HostGate(0.5)
    assert slow._sent.maxlen == 1 and slow._window == pytest.approx(2.05)
