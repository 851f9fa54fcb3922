"""--executor ray: the same download pool, run by N actors on a Ray cluster; only the dispatch differs.

    async with RayDispatch(cfg, port, seed) as dispatch:  # joins Ray, places the actors (`ray_actor`)
        workers = dispatch.start(task_group)               # the feeder and one slot per in-flight batch

The driver (this process) keeps everything that must have one writer: API pages, the cursor, page
checkpoints and the manifest. Jobs are sent to actors in small batches of (key, url) pairs; each actor
runs `Downloader.outcome` -- the local executor's code (see `ray_actor`) -- and returns one `Fetched`
per job, which the driver settles through the port exactly as local workers do.

Back-pressure: at most `in_flight` batches per actor exist at once (a semaphore), so neither Ray's
object store nor the driver's memory grows with the feed. An actor that dies loses nothing: the
batches it held go back to the queue and any live actor takes them (Ray restarts the dead one up to
`MAX_RESTARTS` times); records are written only for results that came back. A driver kill -9 leaves
its actors to Ray, which ends them with the job; the next run resumes from the manifest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any

from crawler.config.settings import ConfigError, CrawlConfig
from crawler.feed.items import Job
from crawler.fetch.download import DownloadCounters
from crawler.fetch.result import Fetched
from crawler.run import ray_actor
from crawler.run.executor import Port
from crawler.run.ray_actor import DownloadActor, PauseBoard, Reply, connect, wait
from crawler.stops import Stop

__all__ = ["BATCH", "RayDispatch", "connect", "in_flight_batches"]

# Jobs per remote call: the driver's cost per call (~1 ms of Ray machinery) spread over many images
# (0.33 ms/image of driver CPU at 16, 0.22 at 64 in `make bench`), small enough that a slow image
# holds back few others' records.
BATCH = 32
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


class RayDispatch:
    """The driver's side: hands batches of the crawl's queue to actors and settles what comes back."""

    def __init__(self, cfg: CrawlConfig, port: Port, seed: int) -> None:
        self.port = port
        self.seed = seed
        self.cfg = cfg
        self.workers = cfg.download_workers
        self.in_flight = in_flight_batches(cfg.concurrency)
        self._counters = DownloadCounters()
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

    @property
    def counters(self) -> DownloadCounters:
        return self._counters

    async def __aenter__(self) -> RayDispatch:
        connect(self.cfg)
        options: dict[str, Any] = {"num_cpus": 1, "max_restarts": MAX_RESTARTS, "max_task_retries": 0,
                                   "scheduling_strategy": "SPREAD"}
        # What the driver was given to reach the object store goes with the actors (nodes may have none).
        env = {k: os.environ[k] for k in AWS_VARS if k in os.environ} if self.cfg.remote else {}
        remote = ray_actor.ray.remote(DownloadActor).options(**options)
        # The key goes to the API only: actors never see it.
        shipped = dataclasses.replace(self.cfg, api_key=None)
        share = self.cfg.cdn_rps / self.workers
        seed = self.seed
        self._board = ray_actor.ray.remote(PauseBoard).options(num_cpus=0).remote()
        self._actors = [remote.remote(shipped, i, share, seed + i, env, self._board) for i in range(self.workers)]
        try:
            places = await asyncio.wait_for(asyncio.gather(*(wait(a.where.remote()) for a in self._actors)),
                                            PLACEMENT_TIMEOUT)
        except (TimeoutError, ray_actor.RayError) as e:
            await self._end_actors()
            raise ConfigError(f"--executor ray: {self.workers} download worker(s) (1 CPU each) did not start within "
                              f"{PLACEMENT_TIMEOUT:.0f}s ({type(e).__name__}); does the cluster have the CPUs?") from None
        for i, (pid, node) in enumerate(places):
            self.port.log(f"download worker {i}: pid {pid} on {node}, {share:g} images/s")
        here = ray_actor.ray.util.get_node_ip_address()
        elsewhere = sorted({node for _pid, node in places if node != here})
        if elsewhere and not self.cfg.remote:
            await self._end_actors()
            raise ConfigError(f"--out {self.cfg.out} is a local directory but download workers run on other nodes "
                              f"({', '.join(elsewhere)}): give an object store URL (s3://bucket/prefix) as --out")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._end_actors()

    async def _end_actors(self) -> None:
        closing = [wait(a.close.remote()) for a in self._actors]
        try:
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), 10)
        except TimeoutError:
            pass
        for actor in self._actors:
            ray_actor.ray.kill(actor, no_restart=True)
        self._actors = []
        if self._board is not None:
            ray_actor.ray.kill(self._board)
            self._board = None

    def start(self, group: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """The tasks that stand for the pool: the crawl waits for all of them to end."""
        slots = [group.create_task(self._slot(i)) for i in range(self.workers) for _ in range(self.in_flight)]
        self._live_slots = len(slots)
        return [group.create_task(self._feed(len(slots)))] + slots

    async def _feed(self, slots: int) -> None:
        queue, stopping = self.port.queue, self.port.stop.stopping
        try:
            ended = False
            while not ended and not stopping():
                job = await self.port.next_job()
                if job is None:
                    break
                batch = [job]
                while len(batch) < BATCH:  # take what is waiting; never wait to fill a batch
                    try:
                        more = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if more is None:
                        self.port.end()  # passed on, as every consumer of the queue does
                        ended = True
                        break
                    batch.append(more)
                await self._permits.acquire()
                self._outstanding += 1
                self._idle.clear()
                self._batches.put_nowait(batch)
            # Batches given back by a failed actor keep the pool open until they are settled.
            await _first(self._idle.wait(), self.port.stop.stopped())
        finally:
            for _ in range(slots):
                self._batches.put_nowait(None)

    async def _slot(self, index: int) -> None:
        actor = self._actors[index]
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            batch = await self._batches.get()
            if batch is None or self.port.stop.stopping():
                return
            down = self._down_until[index] - loop.time()
            if down > 0:  # this slot's actor just failed: leave the batch to a live one, look again later
                self._batches.put_nowait(batch)
                await asyncio.sleep(down)
                continue
            try:
                reply: Reply = await wait(actor.fetch.remote([(job.key, job.url, job.listed, job.video) for job in batch]))
            except ray_actor.RayTaskError as e:  # our code raised in the actor (say, the store refused it): say why
                cause = str(e.cause if getattr(e, "cause", None) is not None else e).strip().splitlines()
                self.port.stop.request(Stop.EXECUTOR_FAILED, f"download worker {index} failed: "
                                        f"{(cause[-1] if cause else type(e).__name__)[:300]}")
                return
            except ray_actor.RayError as e:  # the actor died or cannot be reached
                failures += 1
                attempts = self._attempts[id(batch)] = self._attempts.get(id(batch), 0) + 1
                if attempts >= BATCH_ATTEMPTS:  # it may be what kills them: give it up, not every actor
                    self.port.log(f"{len(batch)} image(s) failed: their download worker died {attempts} times")
                    died = Fetched("failed", reason="worker-died",
                                   error=f"the download worker died {attempts} times ({type(e).__name__})")
                    if not self._settle(batch, [died] * len(batch)):
                        return
                    continue
                self.requeued += len(batch)
                self._batches.put_nowait(batch)  # any live actor takes it; its permit stays taken
                self.port.log(f"download worker {index} failed ({type(e).__name__}); "
                               f"{len(batch)} image(s) go back to the queue")
                if failures >= _SLOT_FAILURES:
                    self._retire()
                    return
                # Ray is restarting the actor: none of its slots takes work until then.
                self._down_until[index] = max(self._down_until[index], loop.time() + min(0.5 * 2 ** failures, 10.0))
                continue
            failures = 0
            self._count(reply)
            if not self._settle(batch, reply.results):
                return  # the disk is full or refuses writes: the crawl is stopping

    def _settle(self, batch: list[Job], results: list[Fetched]) -> bool:
        self._attempts.pop(id(batch), None)
        try:
            # In order, and no further once the crawl is stopping (the disk is full or refuses writes).
            return all(self.port.settle(job, result) for job, result in zip(batch, results, strict=True))
        finally:
            self._outstanding -= 1
            if self._outstanding == 0:
                self._idle.set()
            self._permits.release()

    def _retire(self) -> None:
        self._live_slots -= 1
        if self._live_slots == 0 and not self.port.stop.stopping():
            self.port.stop.request(Stop.EXECUTOR_FAILED, "every Ray download worker failed; unfinished images are "
                                    "not recorded and a rerun fetches them")

    def _count(self, reply: Reply) -> None:
        c = self._counters
        c.requests += reply.requests
        c.retries += reply.retries
        c.throttled += reply.throttled
        c.bytes += reply.bytes


async def _first(*aws: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()

