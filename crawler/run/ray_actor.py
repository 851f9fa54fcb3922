"""--executor ray, the cluster side: joining Ray, and the download actors, which pause together on a 429.

    async with DownloadActors(cfg, seed, log) as actors:  # placed once: one crawl, or every pass of a follow
        stream = actors.handles[i].fetch.options(num_returns="streaming").remote(jobs)

Each `DownloadActor` runs `Downloader.outcome` -- the local executor's code -- with its own CDN session
(built by `open_net`, like every other), its own store (writing straight to the object store, or to
--out on one machine or a shared filesystem) and 1/N of --cdn-rps, so the pool never exceeds it. A
call streams `Reply`s back: at most one per `STREAM_WAIT` with the jobs finished by then, so a stalled
image holds back no other's result for longer than that, and the request counts since the last reply. A 429 at
one actor pauses every actor ("slow the whole pool", as the CDN asks): it tells its peers at once, as a
duration (nodes' clocks need not agree); nothing is polled. Placement fails with one ConfigError (no
CPUs for the actors, or local --out with actors on other nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
from collections.abc import AsyncIterator, Callable
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

# Seconds between a call's replies: a finished image's result waits at most this long. Each reply costs
# the actor ~0.7 ms and the driver ~1 ms of Ray machinery (a whole call ~4 ms, on this loaded 2-core
# machine), so a batch that finishes within it comes back in one reply, as a plain call would.
STREAM_WAIT = 0.5
# What an actor needs to reach the object store as the driver does. Passed as an argument, not through
# Ray's runtime_env, which writes its variables into the cluster's logs.
AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION",
            "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_EC2_METADATA_DISABLED")
MAX_RESTARTS = 3  # Ray restarts a dead actor this often before its slots give up
PLACEMENT_TIMEOUT = 120.0  # seconds for the cluster to start every actor


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


class DownloadActors:
    """--download-workers actors and their pause board, placed on the cluster once and ended once.

    A crawl makes its own; `follow` makes one for the process and lends it to every pass, so the
    actors (and their CDN connections) outlive a pass. `handles[i]` is actor i; `places[i]` its
    (pid, node). `introduce(i)` tells actor i its peers again (after Ray restarted it).
    """

    def __init__(self, cfg: CrawlConfig, seed: int, log: Callable[[str], None]) -> None:
        self.cfg, self.seed, self.log = cfg, seed, log
        self.handles: list[Any] = []
        self.places: list[tuple[int, str]] = []

    async def __aenter__(self) -> DownloadActors:
        cfg, workers = self.cfg, self.cfg.download_workers
        connect(cfg)
        options: dict[str, Any] = {"num_cpus": 1, "max_restarts": MAX_RESTARTS, "max_task_retries": 0,
                                   "scheduling_strategy": "SPREAD"}
        # What the driver was given to reach the object store goes with the actors (nodes may have none).
        env = {k: os.environ[k] for k in AWS_VARS if k in os.environ} if cfg.remote else {}
        remote = ray.remote(DownloadActor).options(**options)
        shipped = dataclasses.replace(cfg, api_key=None)  # the key goes to the API only: actors never see it
        share = cfg.cdn_rps / workers
        self.handles = [remote.remote(shipped, i, share, self.seed + i, env) for i in range(workers)]
        try:
            self.places = await asyncio.wait_for(asyncio.gather(*(wait(a.where.remote()) for a in self.handles)),
                                                 PLACEMENT_TIMEOUT)
            await asyncio.gather(*(wait(self.introduce(i)) for i in range(workers)))
        except (TimeoutError, RayError) as e:
            await self.close()
            raise ConfigError(f"--executor ray: {workers} download worker(s) (1 CPU each) did not start within "
                              f"{PLACEMENT_TIMEOUT:.0f}s ({type(e).__name__}); does the cluster have the CPUs?") from None
        for i, (pid, node) in enumerate(self.places):
            self.log(f"download worker {i}: pid {pid} on {node}, {share:g} images/s")
        here = ray.util.get_node_ip_address()
        elsewhere = sorted({node for _pid, node in self.places if node != here})
        if elsewhere and not cfg.remote:
            await self.close()
            raise ConfigError(f"--out {cfg.out} is a local directory but download workers run on other nodes "
                              f"({', '.join(elsewhere)}): give an object store URL (s3://bucket/prefix) as --out")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def introduce(self, index: int) -> Any:
        """Actor `index` learns the others, to pause them on a 429 (a restarted actor has forgotten them)."""
        return self.handles[index].meet.remote([h for i, h in enumerate(self.handles) if i != index])

    async def close(self) -> None:
        closing = [wait(a.close.remote()) for a in self.handles]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), 10)
        for actor in self.handles:
            ray.kill(actor, no_restart=True)
        self.handles = []


@dataclass(frozen=True, slots=True)
class Reply:
    """Jobs of one call that finished together, as (position in the call, result), and the actor's CDN
    requests since its last reply."""

    results: list[tuple[int, Fetched]]
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    bytes: int = 0


class DownloadActor:
    """One download pool on a Ray worker: `Downloader.outcome` for each job it is sent."""

    def __init__(self, cfg: CrawlConfig, index: int, rps: float, seed: int, env: dict[str, str]) -> None:
        os.environ.update(env)  # before the store is opened: botocore reads credentials and endpoint here
        self.cfg = cfg
        self._peers: list[Any] = []  # the other actors' handles (`meet`)
        self._gate: HostGate | None = None
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

    async def meet(self, peers: list[Any]) -> None:
        self._peers = peers

    async def pause(self, seconds: float) -> None:
        """A peer got a 429: no request to the CDN for `seconds` (from now, on this node's clock)."""
        if self._gate is not None:
            self._gate.pause(seconds)

    async def fetch(self, jobs: list[tuple[Key, str, str | None, bool]]) -> AsyncIterator[Reply]:
        """Each job is (key, url, the URL as listed when `url` rewrites it, whether the item is a video).
        Called with num_returns="streaming": the jobs finished so far, every `STREAM_WAIT` s until all are."""
        downloader = await self._ready()
        assert self._slots is not None
        slots = self._slots

        async def one(i: int, key: Key, url: str, listed: str | None, video: bool) -> tuple[int, Fetched]:
            async with slots:
                return i, await downloader.outcome(key, url, listed, video)

        pending = {asyncio.ensure_future(one(i, *job)) for i, job in enumerate(jobs)}
        try:
            while pending:
                done, pending = await asyncio.wait(pending, timeout=STREAM_WAIT)
                if done:
                    yield self._reply([task.result() for task in done], downloader.counters)
        finally:
            for task in pending:
                task.cancel()

    async def close(self) -> None:
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
        self._gate = net.cdn_gate
        self._slots = asyncio.Semaphore(cfg.concurrency)
        return Downloader.from_config(cfg, net, self._store, self.rng, on_pause=self._pause_peers)

    def _pause_peers(self, seconds: float) -> None:
        """The CDN sees one client: a 429 here pauses every actor. Not awaited (a dead peer pauses nothing)."""
        for peer in self._peers:
            peer.pause.remote(seconds)

    def _reply(self, results: list[tuple[int, Fetched]], now: DownloadCounters) -> Reply:
        last = self._reported
        reply = Reply(results, now.requests - last.requests, now.retries - last.retries,
                      now.throttled - last.throttled, now.bytes - last.bytes)
        self._reported = DownloadCounters(requests=now.requests, retries=now.retries, throttled=now.throttled,
                                          bytes=now.bytes)
        return reply


async def wait(ref: Any) -> Any:
    """Await a Ray ObjectRef on any event loop (uvloop included)."""
    return await asyncio.wrap_future(ref.future())
