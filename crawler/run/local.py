"""--executor local (the default): `--concurrency` asyncio workers in this process, one shared Downloader.

Each worker takes a job from the port's queue, fetches it and settles the result, until the feed's end
mark, a stop, or a settle that says the crawl is stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

from crawler.config.settings import CrawlConfig
from crawler.fetch.download import DownloadCounters, Downloader
from crawler.net.sessions import open_net
from crawler.run.executor import Port


class LocalPool:
    def __init__(self, cfg: CrawlConfig, port: Port, store: Any, rng: random.Random) -> None:
        self.cfg = cfg
        self.port = port
        self.store = store  # the crawl's opened store
        self.rng = rng
        self._stack = contextlib.AsyncExitStack()
        self._downloader: Downloader | None = None
        self._counters = DownloadCounters()  # until the session is open

    @property
    def counters(self) -> DownloadCounters:
        return self._downloader.counters if self._downloader is not None else self._counters

    async def __aenter__(self) -> LocalPool:
        net = await self._stack.enter_async_context(open_net(self.cfg, api=False, cdn=True))
        self._downloader = Downloader.from_config(self.cfg, net, self.store, self.rng)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    def start(self, group: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        return [group.create_task(self._work()) for _ in range(self.cfg.concurrency)]

    async def _work(self) -> None:
        downloader, port = self._downloader, self.port
        assert downloader is not None
        while (job := await port.next_job()) is not None:
            if not port.settle(job, await downloader.outcome(job.key, job.url, job.listed, job.video)):
                return
