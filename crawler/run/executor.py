"""The seam between the crawl and what downloads its jobs: local asyncio workers or Ray actors.

    async with executor:                       # LocalPool(cfg, port, ...) or RayDispatch(cfg, port, ...)
        tasks = executor.start(task_group)     # the crawl waits for these to end
    executor.counters                          # the CDN requests it made (DownloadCounters)

An executor is given a `Port` -- the job queue, `settle`, the stop control and a log -- and never the
crawl. Each job's result is a `Fetched`, handed to `port.settle`; when that returns False the crawl is
stopping. The feed's end is one `None` on the queue: `next_job()` passes it on to the next consumer,
so the crawl need not know how many consumers an executor runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from crawler.feed.items import Job
from crawler.fetch.download import DownloadCounters
from crawler.fetch.result import Fetched
from crawler.run.stopping import StopControl


@dataclass(frozen=True, slots=True)
class Port:
    """All an executor may touch of the crawl."""

    queue: asyncio.Queue[Job | None]
    settle: Callable[[Job, Fetched], bool]  # False: the crawl is stopping (disk full or refusing writes)
    stop: StopControl
    log: Callable[[str], None]

    async def next_job(self) -> Job | None:
        """The next job; None once the feed has ended or the crawl is stopping."""
        if self.stop.stopping():
            return None
        job = await self.queue.get()
        if job is None:
            self.end()  # for the next consumer
            return None
        return None if self.stop.stopping() else job

    def end(self) -> None:
        """Put the end mark (a consumer waiting on the queue wakes, sees it and passes it on)."""
        with contextlib.suppress(asyncio.QueueFull):  # full: nobody is waiting for it
            self.queue.put_nowait(None)


class Executor(Protocol):
    @property
    def counters(self) -> DownloadCounters: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def start(self, group: asyncio.TaskGroup) -> list[asyncio.Task[None]]: ...
