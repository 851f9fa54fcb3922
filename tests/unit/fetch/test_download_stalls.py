"""A download that waits for the network longer than --timeout is retried as `stalled` (`net/stalls.py`).

Over real sockets against the simulator (a body that stops halfway, headers that never come), writing a
real DiskStore; and the two things a stall must never be confused with: a slow store, and the crawl
itself being cancelled.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from conftest import crawl_config

from crawler.fetch.download import Downloader
from crawler.fetch.result import Fetched
from crawler.net.sessions import open_net
from crawler.net.stalls import Stalled, Stalls
from crawler.simulator import FaultConfig
from crawler.store.disk import DiskSink, DiskStore

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 0.4


async def _outcome(sim, root: Path, store: DiskStore | None = None, **flags) -> tuple[Fetched, float]:  # type: ignore[no-untyped-def]
    cfg = crawl_config(root, sim.api_base, timeout=TIMEOUT, retries=0, **flags)
    store = store or DiskStore(root)
    await store.clear_leftovers()
    item = next(i for i in sim.catalogue.items if i["id"] in sim.catalogue.expected())
    try:
        async with open_net(cfg, api=False, cdn=True) as net:
            downloader = Downloader.from_config(cfg, net, store, random.Random(1))
            started = time.monotonic()
            result = await downloader.outcome(item["id"], sim.origin + item["url"] if "://" not in item["url"] else item["url"])
            return result, time.monotonic() - started
    finally:
        await store.close()


def _images(root: Path) -> list[Path]:
    return [p for p in (root / "images").rglob("*") if p.is_file()] if (root / "images").exists() else []


async def test_a_body_that_stops_halfway_is_stalled_after_about_the_timeout(sim_factory, tmp_path):
    async with sim_factory(images=5, seed=3, faults=FaultConfig(cdn_stall=1.0, stall_seconds=20)) as sim:
        result, took = await _outcome(sim, tmp_path)
    assert (result.status, result.reason) == ("failed", "stalled"), result
    # Noticed between the timeout and 1.25 x it (the sweep's period), plus scheduling slack.
    assert TIMEOUT <= took < 2.5, took
    assert not _images(tmp_path)


async def test_headers_that_never_come_are_stalled_too(sim_factory, tmp_path):
    async with sim_factory(images=5, seed=3, faults=FaultConfig(latency_ms=20_000)) as sim:
        result, took = await _outcome(sim, tmp_path)
    assert (result.status, result.reason) == ("failed", "stalled"), result
    assert TIMEOUT <= took < 2.5, took


class _SlowSink:
    """A sink whose every write takes longer than --timeout (a slow disk, an object store's part upload)."""

    def __init__(self, sink: DiskSink) -> None:
        self._sink = sink

    async def write(self, chunk: bytes) -> None:
        await asyncio.sleep(TIMEOUT * 2)
        await self._sink.write(chunk)

    async def commit(self) -> None:
        await self._sink.commit()

    async def abort(self) -> None:
        await self._sink.abort()


class _SlowStore(DiskStore):
    def sink(self, rel_path: str, content_type: str) -> _SlowSink:  # type: ignore[override]
        return _SlowSink(super().sink(rel_path, content_type))


async def test_a_store_slower_than_the_timeout_is_not_a_stall(sim_factory, tmp_path):
    async with sim_factory(images=5, seed=3) as sim:
        result, took = await _outcome(sim, tmp_path, store=_SlowStore(tmp_path))
    assert result.status == "done", result
    assert took >= TIMEOUT * 2
    assert len(_images(tmp_path)) == 1


async def test_a_crawl_cancelled_while_a_download_stalls_is_cancelled_not_stalled(sim_factory, tmp_path):
    async with sim_factory(images=5, seed=3, faults=FaultConfig(cdn_stall=1.0, stall_seconds=20)) as sim:
        task = asyncio.create_task(_outcome(sim, tmp_path))
        await asyncio.sleep(TIMEOUT / 2)  # inside the stall, before the timeout
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not _images(tmp_path)


async def test_a_stall_and_a_cancel_at_once_leave_the_cancel_standing() -> None:
    """Both in the same loop turn: the stall's cancellation is taken back, the other one is not swallowed."""
    stalls = Stalls(timeout=30)
    entered = asyncio.Event()

    async def download() -> None:
        with stalls.watch() as watch:
            watch.waiting()
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(download())
    await entered.wait()
    (watch,) = stalls._watched
    watch.since = stalls.loop.time() - 31  # waited past the timeout
    stalls._sweep()  # the stall fires...
    task.cancel()  # ...and the crawl is cancelled before the task runs again
    with pytest.raises(asyncio.CancelledError):
        await task
    assert watch.fired


async def test_a_stall_alone_is_raised_as_stalled_and_the_task_is_not_left_cancelled() -> None:
    stalls = Stalls(timeout=0.2)

    async def download() -> int:
        with pytest.raises(Stalled):
            with stalls.watch() as watch:
                watch.waiting()
                await asyncio.sleep(60)
        await asyncio.sleep(0)  # the task goes on: no cancellation is left pending
        return asyncio.current_task().cancelling()  # type: ignore[union-attr]

    assert await asyncio.wait_for(download(), 5) == 0
