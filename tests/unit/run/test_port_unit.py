"""run/executor.py's Port: one end mark ends every consumer, and a stop ends them without it.

The crawl puts a single `None` after the last job whatever its executor runs (eight local workers,
one Ray feeder): each consumer that takes the mark puts it back for the next.
"""

from __future__ import annotations

import asyncio

import pytest

from crawler.feed.items import make_job
from crawler.fetch.result import Fetched
from crawler.run.executor import Port
from crawler.run.stopping import StopControl
from crawler.simulator import Catalogue, SimConfig
from crawler.stops import Stop

pytestmark = pytest.mark.timeout(20)
ITEMS = Catalogue(SimConfig(images=30, seed=95)).items


def _port(settled: list) -> Port:  # type: ignore[type-arg]
    def settle(job, result):  # type: ignore[no-untyped-def]
        settled.append((job.id, result.status))
        return True
    return Port(asyncio.Queue(maxsize=8), settle, StopControl(), lambda text: None)


async def _consume(port: Port) -> int:
    taken = 0
    while (job := await port.next_job()) is not None:
        port.settle(job, Fetched("done"))
        taken += 1
    return taken


async def test_one_end_mark_ends_every_consumer_after_every_job():
    settled: list = []  # type: ignore[type-arg]
    port = _port(settled)
    async with asyncio.TaskGroup() as group:
        consumers = [group.create_task(_consume(port)) for _ in range(5)]
        for item in ITEMS:
            await port.queue.put(make_job(item, None, False, 1))
        await port.queue.put(None)
        await asyncio.wait_for(asyncio.gather(*consumers), 5)
    assert sum(c.result() for c in consumers) == len(ITEMS) == len(settled)


async def test_a_stop_ends_idle_consumers_and_no_job_is_taken_after_it():
    settled: list = []  # type: ignore[type-arg]
    port = _port(settled)
    async with asyncio.TaskGroup() as group:
        consumers = [group.create_task(_consume(port)) for _ in range(3)]
        await asyncio.sleep(0.05)  # all idle, waiting on the queue
        port.stop.request(Stop.DISK_FULL, "disk full (test)")
        port.end()  # as the crawl's supervisor does
        await asyncio.wait_for(asyncio.gather(*consumers), 5)
    await port.queue.put(make_job(ITEMS[0], None, False, 1))
    assert await port.next_job() is None and not settled
    assert port.stop.reason == (Stop.DISK_FULL, "disk full (test)")


def test_a_requested_stop_replaces_a_complete_reason_but_not_another_cause():
    control = StopControl()
    control.finish(Stop.FEED_ENDED, "ended")
    control.request(Stop.INTERRUPTED, "signal")
    assert control.reason == (Stop.INTERRUPTED, "signal") and control.stopping()
    control.request(Stop.DISK_FULL, "later")
    assert control.reason == (Stop.INTERRUPTED, "signal")  # the first cause wins
