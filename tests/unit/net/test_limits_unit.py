"""net/limits.py on its own: a HostGate never lets more than `rate` requests start in any one second,
reaches close to that rate when it is the bottleneck, and holds every caller during a pause; a ByteGate
does the same for bytes (--max-rate), measured here where it admits them.

Requests go to the simulator's CDN over real sockets, and the rate is measured where it matters: at
the server, by arrival time. Many more callers than the rate needs wait on the gate, so the gate
alone decides the pace.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import aiohttp
import pytest
from conftest import most_within

from crawler.net.limits import ByteGate, HostGate

pytestmark = pytest.mark.timeout(60)


async def _hammer(sim, gate: HostGate, seconds: float, callers: int = 40,
                  during=None) -> list[float]:  # type: ignore[no-untyped-def]
    """Callers loop gate -> GET until `seconds` pass; returns when each was let through (monotonic)."""
    url = sim.origin + sim.catalogue.items[0]["url"]
    starts: list[float] = []
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=callers)) as session:

        async def caller() -> None:
            while time.monotonic() < deadline:
                await gate.acquire()
                starts.append(time.monotonic())
                async with session.get(url) as response:
                    await response.read()

        async with asyncio.TaskGroup() as group:
            for _ in range(callers):
                group.create_task(caller())
            if during is not None:
                group.create_task(during())
    return starts


@pytest.mark.parametrize("rate", [20, 60])
async def test_the_rate_is_never_exceeded_in_any_second_and_nearly_reached(sim_factory, rate):
    seconds = 3.0
    async with sim_factory(images=5, seed=91) as sim:
        starts = await _hammer(sim, HostGate(rate), seconds)
        arrivals = [e.t for e in sim.log.entries("cdn")]
    assert most_within(starts, 1.0) <= rate
    assert most_within(arrivals, 1.0) <= rate, "the server saw more than the rate in one second"
    # The gate is the bottleneck (40 callers, a local server): it lets through close to the rate.
    assert len(arrivals) >= 0.8 * rate * (seconds - 1), len(arrivals)


async def test_a_pause_holds_every_caller_until_it_ends(sim_factory):
    gate = HostGate(50)
    paused: list[float] = []

    async def pause_soon() -> None:
        await asyncio.sleep(0.7)
        paused.append(time.monotonic())
        gate.pause(0.8)
        gate.pause(0.2)  # an earlier end never shortens a pause

    async with sim_factory(images=5, seed=92) as sim:
        starts = await _hammer(sim, gate, 2.5, during=pause_soon)
    begin = paused[0]
    assert not [t for t in starts if begin < t < begin + 0.8], "a request started during the pause"
    assert [t for t in starts if t < begin] and [t for t in starts if t >= begin + 0.8]


async def _read_through(gate: ByteGate, seconds: float) -> list[tuple[float, int]]:
    """8 readers take uneven reads, up to a chunk each, through `gate` for `seconds`: (when, bytes) admitted."""
    admitted: list[tuple[float, int]] = []
    deadline = time.monotonic() + seconds

    async def reader(size: int) -> None:
        while time.monotonic() < deadline:
            await gate.acquire(size)
            admitted.append((time.monotonic(), size))

    async with asyncio.TaskGroup() as group:
        for n in range(8):
            group.create_task(reader((n + 1) * gate.chunk // 8))
    return admitted


def _most_within(admitted: list[tuple[float, int]], span: float) -> int:
    """The most bytes admitted within any `span` seconds."""
    most = start = total = 0
    for t, size in admitted:
        total += size
        while t - admitted[start][0] >= span:
            total -= admitted[start][1]
            start += 1
        most = max(most, total)
    return most


async def test_bytes_never_exceed_the_cap_in_any_second_and_nearly_reach_it():
    rate, seconds = 400_000, 3.0
    admitted = await _read_through(ByteGate(rate), seconds)
    most = _most_within(admitted, 1.0)
    assert most <= rate, f"{most} bytes admitted within one second"
    assert sum(size for _, size in admitted) >= 0.9 * rate * seconds


async def test_the_pace_is_smooth_within_the_second():
    """--max-rate shapes the traffic: a tenth of a second never gets much more than a tenth of the rate
    (a bucket holding the whole second's budget would let it all through in a burst at the start)."""
    rate = 400_000
    gate = ByteGate(rate)
    admitted = await _read_through(gate, 1.5)
    most = _most_within(admitted, 0.1)
    assert most <= 0.1 * rate + 3 * gate.chunk, f"{most} bytes admitted within 0.1 s"


def test_a_chunk_fits_the_budget_many_times_a_second_and_is_at_most_256_KiB():
    assert ByteGate(1 << 20).chunk == 1 << 16  # 16 reads a second at 1 MiB/s
    assert ByteGate(100 << 20).chunk == 256 << 10  # the read size is capped: memory per read stays small
    for rate in (1, 2, 15, 16, 31, 1000):
        gate = ByteGate(rate)
        assert 1 <= gate.chunk <= rate and gate.chunk <= max(1, rate // 16)


async def test_at_one_byte_a_second_each_byte_waits_its_second():
    """The smallest budget still moves: the window's count starts at nothing, a byte fits a budget of one,
    and every byte asked for is paid for."""
    gate = ByteGate(1)
    times = [time.monotonic()]
    for _ in range(3):
        await asyncio.wait_for(gate.acquire(1), 5)
        times.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] < 0.5, gaps  # the first byte at once
    assert all(1.0 <= gap < 2.0 for gap in gaps[1:]), gaps
