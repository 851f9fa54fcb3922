"""--executor ray: the same download pool, run by N actors on a Ray cluster; only the dispatch differs.

    async with RayDispatch(crawl, cfg) as dispatch:     # joins Ray, places the actors
        workers = dispatch.start(task_group)            # the feeder and one slot per in-flight batch

The driver (this process) keeps everything that must have one writer: API pages, the cursor, page
checkpoints and the manifest. Jobs are sent to actors in small batches of (key, url) pairs; each actor
runs `Downloader.outcome` -- the local executor's code, with its own aiohttp session, its store
(writing straight to the object store, or to --out on a single machine or shared filesystem) and
1/N of --cdn-rps, so the pool as a whole never exceeds it -- and returns small result records that
the driver settles exactly as local workers do.

Back-pressure: at most `in_flight` batches per actor exist at once (a semaphore), so neither Ray's
object store nor the driver's memory grows with the feed. An actor that dies loses nothing: the
batches it held go back to the queue and any live actor takes them (Ray restarts the dead one up to
`MAX_RESTARTS` times); records are written only for results that came back. A driver kill -9 leaves
its actors to Ray, which ends them with the job; the next run resumes from the manifest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import time
from typing import TYPE_CHECKING, Any

import aiohttp

from crawler.config import settings as config_mod
from crawler.config.settings import ConfigError, CrawlConfig
from crawler.fetch.download import DownloadCounters, Downloader
from crawler.feed.items import Job
from crawler.net.limits import HostGate
from crawler.net.retry import RetryPolicy
from crawler.store.paths import make_store

if TYPE_CHECKING:
    from crawler.run.crawl import Crawl

# Imported by `connect()`: how Ray picks its node address is read from the environment at import.
ray: Any = None
RayError: Any = Exception
RayTaskError: Any = Exception

# Jobs per remote call: the driver's cost per call (~1 ms of Ray machinery) spread over many images
# (0.33 ms/image of driver CPU at 16, 0.22 at 64 in `make bench`), small enough that a slow image
# holds back few others' records.
BATCH = 32
PAUSE_POLL = 0.2  # seconds between an actor's looks at the shared 429 pause
BATCH_ATTEMPTS = 3  # a batch whose actor died this often is settled as failed (it may be what kills them)
# What an actor needs to reach the object store as the driver does. Passed as an argument, not through
# Ray's runtime_env, which writes its variables into the cluster's logs.
AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION",
            "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_EC2_METADATA_DISABLED")
MAX_RESTARTS = 3  # Ray restarts a dead actor this often before its slots give up
PLACEMENT_TIMEOUT = 120.0  # seconds for the cluster to start every actor
_SLOT_FAILURES = 5  # consecutive failed calls after which a slot stops taking batches


def in_flight_batches(concurrency: int) -> int:
    """Batches handed to one actor at a time: enough that its pool stays busy while a batch waits on a
    slow image, few enough to bound what a dead actor or driver leaves to redo."""
    return max(3, -(-4 * concurrency // BATCH))


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
    """One download pool on a Ray worker: `Downloader.outcome` for each (key, url) it is sent."""

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
        self._session: aiohttp.ClientSession | None = None
        self._store: Any = None
        self._slots: asyncio.Semaphore | None = None
        self._reported = DownloadCounters()

    async def where(self) -> tuple[int, str]:
        import ray as ray_here  # this runs in the actor's process, where connect() never ran
        return os.getpid(), ray_here.util.get_node_ip_address()

    async def fetch(self, jobs: list[tuple[Any, str]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Results in the order of `jobs`, and the request counters since the last call."""
        downloader = await self._ready()
        assert self._slots is not None
        slots = self._slots

        async def one(key: Any, url: str) -> dict[str, Any]:
            async with slots:
                return await downloader.outcome(key, url)

        results = await asyncio.gather(*(one(key, url) for key, url in jobs))
        return list(results), self._delta(downloader.counters)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        if self._session is not None:
            await self._session.close()
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
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=cfg.timeout, sock_read=cfg.timeout)
        self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False,
                                              connector=aiohttp.TCPConnector(limit=cfg.concurrency, ttl_dns_cache=300))
        self._slots = asyncio.Semaphore(cfg.concurrency)
        gate = HostGate(self.rps)
        board = self.board
        if board is not None:
            self._watch = asyncio.ensure_future(self._follow_board(gate))
        return Downloader(self._session, gate, RetryPolicy(cfg.retries, cfg.backoff_base, cfg.backoff_max), self._store,
                          cfg.allowed_hosts, cfg.max_bytes, config_mod.USER_AGENT, self.rng,
                          on_pause=(lambda seconds: board.pause.remote(seconds)) if board is not None else None)

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

    def _delta(self, now: DownloadCounters) -> dict[str, int]:
        last = self._reported
        delta = {"requests": now.requests - last.requests, "retries": now.retries - last.retries,
                 "throttled": now.throttled - last.throttled, "bytes": now.bytes - last.bytes}
        self._reported = DownloadCounters(requests=now.requests, retries=now.retries, throttled=now.throttled,
                                          bytes=now.bytes)
        return delta


class RayDispatch:
    """The driver's side: hands batches of the crawl's queue to actors and settles what comes back."""

    def __init__(self, crawl: "Crawl", cfg: CrawlConfig) -> None:
        self.crawl = crawl
        self.cfg = cfg
        self.workers = cfg.download_workers
        self.in_flight = in_flight_batches(cfg.concurrency)
        self.counters = DownloadCounters()
        self._actors: list[Any] = []
        self._board: Any = None
        self._batches: asyncio.Queue[list[Job] | None] = asyncio.Queue()
        self._permits = asyncio.Semaphore(self.workers * self.in_flight)
        self._outstanding = 0  # batches handed out and not yet settled
        self._idle = asyncio.Event()
        self._idle.set()
        self._live_slots = 0
        self.requeued = 0  # jobs given back after an actor failed
        self._attempts: dict[int, int] = {}  # id(batch) -> times its actor died holding it
        self._down_until = [0.0] * self.workers  # per actor: loop time before which its slots take no work

    async def __aenter__(self) -> "RayDispatch":
        connect(self.cfg)
        options: dict[str, Any] = {"num_cpus": 1, "max_restarts": MAX_RESTARTS, "max_task_retries": 0,
                                   "scheduling_strategy": "SPREAD"}
        # What the driver was given to reach the object store goes with the actors (nodes may have none).
        env = {k: os.environ[k] for k in AWS_VARS if k in os.environ} if self.cfg.remote else {}
        remote = ray.remote(DownloadActor).options(**options)
        # The key goes to the API only: actors never see it.
        shipped = dataclasses.replace(self.cfg, api_key=None)
        share = self.cfg.cdn_rps / self.workers
        seed = self.crawl.rng.randrange(2**32)
        self._board = ray.remote(PauseBoard).options(num_cpus=0).remote()
        self._actors = [remote.remote(shipped, i, share, seed + i, env, self._board) for i in range(self.workers)]
        try:
            places = await asyncio.wait_for(asyncio.gather(*(_wait(a.where.remote()) for a in self._actors)),
                                            PLACEMENT_TIMEOUT)
        except (asyncio.TimeoutError, RayError) as e:
            await self._end_actors()
            raise ConfigError(f"--executor ray: {self.workers} download worker(s) (1 CPU each) did not start within "
                              f"{PLACEMENT_TIMEOUT:.0f}s ({type(e).__name__}); does the cluster have the CPUs?") from None
        for i, (pid, node) in enumerate(places):
            self.crawl.log(f"download worker {i}: pid {pid} on {node}, {share:g} images/s")
        here = ray.util.get_node_ip_address()
        elsewhere = sorted({node for _pid, node in places if node != here})
        if elsewhere and not self.cfg.remote:
            await self._end_actors()
            raise ConfigError(f"--out {self.cfg.out} is a local directory but download workers run on other nodes "
                              f"({', '.join(elsewhere)}): give an object store URL (s3://bucket/prefix) as --out")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._end_actors()

    async def _end_actors(self) -> None:
        closing = [_wait(a.close.remote()) for a in self._actors]
        try:
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), 10)
        except asyncio.TimeoutError:
            pass
        for actor in self._actors:
            ray.kill(actor, no_restart=True)
        self._actors = []
        if self._board is not None:
            ray.kill(self._board)
            self._board = None

    def start(self, group: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """The tasks that stand for the pool: the crawl waits for all of them to end."""
        slots = [group.create_task(self._slot(i)) for i in range(self.workers) for _ in range(self.in_flight)]
        self._live_slots = len(slots)
        return [group.create_task(self._feed(len(slots)))] + slots

    async def _feed(self, slots: int) -> None:
        queue, stopping = self.crawl.queue, self.crawl.stopping
        try:
            ended = False
            while not ended and not stopping():
                job = await queue.get()
                if job is None:
                    break
                batch = [job]
                while len(batch) < BATCH:  # take what is waiting; never wait to fill a batch
                    try:
                        more = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if more is None:
                        ended = True
                        break
                    batch.append(more)
                await self._permits.acquire()
                self._outstanding += 1
                self._idle.clear()
                self._batches.put_nowait(batch)
            # Batches given back by a failed actor keep the pool open until they are settled.
            await _first(self._idle.wait(), self.crawl.stopped())
        finally:
            for _ in range(slots):
                self._batches.put_nowait(None)

    async def _slot(self, index: int) -> None:
        actor = self._actors[index]
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            batch = await self._batches.get()
            if batch is None or self.crawl.stopping():
                return
            down = self._down_until[index] - loop.time()
            if down > 0:  # this slot's actor just failed: leave the batch to a live one, look again later
                self._batches.put_nowait(batch)
                await asyncio.sleep(down)
                continue
            try:
                results, delta = await _wait(actor.fetch.remote([(job.key, job.url) for job in batch]))
            except RayTaskError as e:  # our code raised in the actor (say, the store refused it): say why
                cause = str(e.cause if getattr(e, "cause", None) is not None else e).strip().splitlines()
                self.crawl.request_stop("executor-failed", f"download worker {index} failed: "
                                        f"{(cause[-1] if cause else type(e).__name__)[:300]}")
                return
            except RayError as e:  # the actor died or cannot be reached
                failures += 1
                attempts = self._attempts[id(batch)] = self._attempts.get(id(batch), 0) + 1
                if attempts >= BATCH_ATTEMPTS:  # it may be what kills them: give it up, not every actor
                    self.crawl.log(f"{len(batch)} image(s) failed: their download worker died {attempts} times")
                    if not self._settle(batch, [{"status": "failed", "reason": "worker-died", "error":
                                                 f"the download worker died {attempts} times ({type(e).__name__})"}
                                                for _job in batch]):
                        return
                    continue
                self.requeued += len(batch)
                self._batches.put_nowait(batch)  # any live actor takes it; its permit stays taken
                self.crawl.log(f"download worker {index} failed ({type(e).__name__}); "
                               f"{len(batch)} image(s) go back to the queue")
                if failures >= _SLOT_FAILURES:
                    self._retire()
                    return
                # Ray is restarting the actor: none of its slots takes work until then.
                self._down_until[index] = max(self._down_until[index], loop.time() + min(0.5 * 2 ** failures, 10.0))
                continue
            failures = 0
            self._count(delta)
            if not self._settle(batch, results):
                return  # the disk is full or refuses writes: the crawl is stopping

    def _settle(self, batch: list[Job], results: list[dict[str, Any]]) -> bool:
        self._attempts.pop(id(batch), None)
        try:
            for job, result in zip(batch, results):
                if not self.crawl.settle(job, result):
                    return False
            return True
        finally:
            self._outstanding -= 1
            if self._outstanding == 0:
                self._idle.set()
            self._permits.release()

    def _retire(self) -> None:
        self._live_slots -= 1
        if self._live_slots == 0 and not self.crawl.stopping():
            self.crawl.request_stop("executor-failed", "every Ray download worker failed; unfinished images are "
                                    "not recorded and a rerun fetches them")

    def _count(self, delta: dict[str, int]) -> None:
        c = self.counters
        c.requests += delta["requests"]
        c.retries += delta["retries"]
        c.throttled += delta["throttled"]
        c.bytes += delta["bytes"]


async def _wait(ref: Any) -> Any:
    """Await a Ray ObjectRef on any event loop (uvloop included)."""
    return await asyncio.wrap_future(ref.future())


async def _first(*aws: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()

