"""net/limits.py on its own: a HostGate never lets more than `rate` requests start in any one second,
reaches close to that rate when it is the bottleneck, and holds every caller during a pause; a ByteGate
does the same for bytes (--max-rate), measured here where it admits them.

Requests go to the simulator's CDN over real sockets, and the rate is measured where it matters: at
the server, by arrival time. Many more callers than the rate needs wait on the gate, so the gate
alone decides the pace.
"""

from __future__ import annotations

import asyncio
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


async def test_bytes_never_exceed_the_cap_in_any_second_and_nearly_reach_it():
    rate, seconds = 400_000, 3.0
    gate = ByteGate(rate)
    admitted: list[tuple[float, int]] = []
    deadline = time.monotonic() + seconds

    async def reader(size: int) -> None:
        while time.monotonic() < deadline:
            await gate.acquire(size)
            admitted.append((time.monotonic(), size))

    async with asyncio.TaskGroup() as group:
        for n in range(8):  # uneven reads, up to a chunk each
            group.create_task(reader((n + 1) * gate.chunk // 8))
    most = start = total = 0
    for t, size in admitted:
        total += size
        while t - admitted[start][0] >= 1.0:
            total -= admitted[start][1]
            start += 1
        most = max(most, total)
    assert most <= rate, f"{most} bytes admitted within one second"
    assert sum(size for _, size in admitted) >= 0.9 * rate * seconds
