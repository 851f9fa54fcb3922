"""--executor ray, the cluster side: joining Ray, the download actors and the board that pauses them all.

Each `DownloadActor` runs `Downloader.outcome` -- the local executor's code -- with its own CDN session
(built by `open_net`, like every other), its own store (writing straight to the object store, or to
--out on one machine or a shared filesystem) and 1/N of --cdn-rps, so the pool never exceeds it. A
call returns a `Reply`: one `Fetched` per job, in order, and the request counts since the last call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any

from crawler.config.settings import ConfigError, CrawlConfig
from crawler.fetch.download import DownloadCounters, Downloader
from crawler.fetch.result import Fetched
from crawler.keys import Key
from crawler.net.limits import HostGate
from crawler.net.sessions import open_net
from crawler.store.paths import make_store

# Imported by `connect()`: how Ray picks its node address is read from the environment at import.
ray: Any = None
RayError: Any = Exception
RayTaskError: Any = Exception

PAUSE_POLL = 0.2  # seconds between an actor's looks at the shared 429 pause


def connect(cfg: CrawlConfig) -> None:
    """Join the cluster (--ray-address) or start a local Ray sized for the actors; once per process."""
    global ray, RayError, RayTaskError
    host = (cfg.ray_address or "").rpartition(":")[0]
    if not cfg.ray_address or host in ("localhost", "::1") or host.startswith("127."):
        # A cluster on this machine keeps its traffic on loopback (Ray otherwise uses the address of the
        # default route, as a multi-node head would, and a driver given 127.0.0.1 looks for it there).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray as ray_module
        from ray.exceptions import RayError as ray_error
        from ray.exceptions import RayTaskError as ray_task_error
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'civitai-mirror[ray]'") from None
    ray, RayError, RayTaskError = ray_module, ray_error, ray_task_error
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if cfg.ray_address:
        kwargs["address"] = cfg.ray_address
    else:
        kwargs["num_cpus"] = max(os.cpu_count() or 1, cfg.download_workers)
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = cfg.ray_address or "a local Ray"
        raise ConfigError(f"--executor ray: cannot join {where}: {str(e).splitlines()[0][:200]}") from None


@dataclass(frozen=True, slots=True)
class Reply:
    """One batch's results, in the order of its jobs, and the actor's CDN requests since its last reply."""

    results: list[Fetched]
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    bytes: int = 0


class PauseBoard:
    """One per crawl: a 429 seen by any actor pauses them all ("slow the whole pool", as the CDN asks).

    Durations, not clock times, cross the cluster: the board keeps the deadline on its own clock, so
    nodes' clocks need not agree. Actors report a pause when they get one and poll `remaining()`
    every `PAUSE_POLL` seconds, so the others stop within that.
    """

    def __init__(self) -> None:
        self._until = 0.0

    def pause(self, seconds: float) -> None:
        self._until = max(self._until, time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self._until - time.monotonic())


class DownloadActor:
    """One download pool on a Ray worker: `Downloader.outcome` for each job it is sent."""

    def __init__(self, cfg: CrawlConfig, index: int, rps: float, seed: int, env: dict[str, str],
                 board: Any = None) -> None:
        os.environ.update(env)  # before the store is opened: botocore reads credentials and endpoint here
        self.cfg = cfg
        self.board = board
        self._watch: asyncio.Task[None] | None = None
        self.index = index
        self.rps = rps
        self.rng = random.Random(seed)
        self._ready_once: asyncio.Future[Downloader] | None = None
        self._net = contextlib.AsyncExitStack()
        self._store: Any = None
        self._slots: asyncio.Semaphore | None = None
        self._reported = DownloadCounters()

    async def where(self) -> tuple[int, str]:
        import ray as ray_here  # this runs in the actor's process, where connect() never ran
        return os.getpid(), ray_here.util.get_node_ip_address()

    async def fetch(self, jobs: list[tuple[Key, str, str | None, bool]]) -> Reply:
        """Each job is (key, url, the URL as listed when `url` rewrites it, whether the item is a video)."""
        downloader = await self._ready()
        assert self._slots is not None
        slots = self._slots

        async def one(key: Key, url: str, listed: str | None, video: bool) -> Fetched:
            async with slots:
                return await downloader.outcome(key, url, listed, video)

        results = await asyncio.gather(*(one(*job) for job in jobs))
        return self._reply(list(results), downloader.counters)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        await self._net.aclose()
        if self._store is not None:
            await self._store.close()

    async def _ready(self) -> Downloader:
        # The first calls arrive together: all of them wait for one setup (one session, one gate).
        if self._ready_once is None:
            self._ready_once = asyncio.ensure_future(self._setup())
        return await asyncio.shield(self._ready_once)

    async def _setup(self) -> Downloader:
        cfg = self.cfg
        self._store = make_store(cfg.out, cfg.storage_options())
        await self._store.open()
        # This actor's part of --cdn-rps is its part of --max-rate too: all actors together hold both.
        share = self.rps / cfg.cdn_rps
        net = await self._net.enter_async_context(open_net(cfg, api=False, cdn=True, cdn_rps=self.rps, share=share))
        assert net.cdn_gate is not None
        self._slots = asyncio.Semaphore(cfg.concurrency)
        board = self.board
        if board is not None:
            self._watch = asyncio.ensure_future(self._follow_board(net.cdn_gate))
        return Downloader.from_config(cfg, net, self._store, self.rng,
                                      on_pause=board.pause.remote if board is not None else None)

    async def _follow_board(self, gate: HostGate) -> None:
        """Pause when another actor was told to (a 429 there): the CDN sees one client."""
        while True:
            await asyncio.sleep(PAUSE_POLL)
            try:
                remaining = await self.board.remaining.remote()
            except Exception:  # the board is gone (the crawl is ending): each actor still pauses itself
                continue
            if remaining > 0:
                gate.pause(remaining)

    def _reply(self, results: list[Fetched], now: DownloadCounters) -> Reply:
        last = self._reported
        reply = Reply(results, now.requests - last.requests, now.retries - last.retries,
                      now.throttled - last.throttled, now.bytes - last.bytes)
        self._reported = DownloadCounters(requests=now.requests, retries=now.retries, throttled=now.throttled,
                                          bytes=now.bytes)
        return reply


async def wait(ref: Any) -> Any:
    """Await a Ray ObjectRef on any event loop (uvloop included)."""
    return await asyncio.wrap_future(ref.future())
