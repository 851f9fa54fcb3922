"""--executor ray: the same download pool, run by N actors on a Ray cluster; only the dispatch differs.

    async with RayDispatch(cfg, port, seed) as dispatch:  # joins Ray, places the actors (`ray_actor`)
        workers = dispatch.start(task_group)               # the feeder and one slot per in-flight batch
    RayDispatch(cfg, port, seed, actors=shared)           # follow: every pass uses the same actors

The driver (this process) keeps everything that must have one writer: API pages, the cursor, page
checkpoints and the manifest. Jobs are sent to actors in small batches of (key, url) pairs; each actor
runs `Downloader.outcome` -- the local executor's code (see `ray_actor`) -- and streams the results
back as they finish (a Ray streaming generator), which the driver settles through the port exactly as
local workers do: one stalled image holds back no other image's record.

Back-pressure: at most `in_flight` batches per actor exist at once (a semaphore), so neither Ray's
object store nor the driver's memory grows with the feed. An actor that dies loses nothing: what it
had not yet reported goes back to the queue and any live actor takes it (Ray restarts the dead one up
to `MAX_RESTARTS` times); records are written only for results that came back. A driver kill -9
leaves its actors to Ray, which ends them with the job; the next run resumes from the manifest.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from crawler.config.settings import CrawlConfig
from crawler.feed.items import Job
from crawler.fetch.download import DownloadCounters
from crawler.fetch.result import Fetched
from crawler.run import ray_actor
from crawler.run.executor import Port
from crawler.run.ray_actor import DownloadActors, Reply, connect, wait
from crawler.stops import Stop

__all__ = ["BATCH", "DownloadActors", "RayDispatch", "connect", "in_flight_batches"]

# Jobs per remote call, at most: a call costs the driver and the actor ~4 ms of Ray machinery together,
# so the more images share it the better; results stream back as they finish, so the size no longer
# decides how long a slow image holds back others' records. A batch takes only what the crawl's queue
# holds (64 at --concurrency 16), never waiting to fill.
BATCH = 64
BATCH_ATTEMPTS = 3  # a batch whose actor died this often is settled as failed (it may be what kills them)
_SLOT_FAILURES = 5  # consecutive failed calls after which a slot stops taking batches


def in_flight_batches(concurrency: int) -> int:
    """Batches handed to one actor at a time: enough that its pool stays busy while a batch waits on a
    slow image, few enough to bound what a dead actor or driver leaves to redo."""
    return max(3, -(-4 * concurrency // BATCH))


@dataclass(slots=True, eq=False)
class _Batch:
    jobs: list[Job]  # not yet settled
    attempts: int = 0  # times an actor died holding it


class RayDispatch:
    """The driver's side: hands batches of the crawl's queue to actors and settles what comes back."""

    def __init__(self, cfg: CrawlConfig, port: Port, seed: int, actors: DownloadActors | None = None) -> None:
        self.port = port
        self.cfg = cfg
        self.workers = cfg.download_workers
        self.in_flight = in_flight_batches(cfg.concurrency)
        self._own = actors is None  # placed (and ended) by this dispatch, not lent by a follow
        self.actors = actors if actors is not None else DownloadActors(cfg, seed, port.log)
        self._counters = DownloadCounters()
        self._batches: asyncio.Queue[_Batch | None] = asyncio.Queue()
        self._permits = asyncio.Semaphore(self.workers * self.in_flight)
        self._outstanding = 0  # batches handed out and not yet settled
        self._idle = asyncio.Event()
        self._idle.set()
        self._live_slots = 0
        self.requeued = 0  # jobs given back after an actor failed
        self._down_until = [0.0] * self.workers  # per actor: loop time before which its slots take no work
        self._restarted: set[int] = set()  # actors that failed: once back, they are told their peers again

    @property
    def counters(self) -> DownloadCounters:
        return self._counters

    async def __aenter__(self) -> RayDispatch:
        if self._own:
            await self.actors.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._own:
            await self.actors.close()

    def start(self, group: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """The tasks that stand for the pool: the crawl waits for all of them to end."""
        # Interleaved, so that batches go to the actors in turn (a small crawl is not all one actor's).
        slots = [group.create_task(self._slot(i)) for _ in range(self.in_flight) for i in range(self.workers)]
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
                self._batches.put_nowait(_Batch(batch))
            # Batches given back by a failed actor keep the pool open until they are settled.
            await _first(self._idle.wait(), self.port.stop.stopped())
        finally:
            for _ in range(slots):
                self._batches.put_nowait(None)

    async def _slot(self, index: int) -> None:
        actor = self.actors.handles[index]
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
            jobs = batch.jobs
            settled: set[int] = set()
            try:
                if index in self._restarted:
                    self._restarted.discard(index)
                    await wait(self.actors.introduce(index))
                stream = actor.fetch.options(num_returns="streaming").remote(
                    [(job.key, job.url, job.listed, job.video) for job in jobs])
                async for ref in stream:
                    reply: Reply = await wait(ref)
                    self._count(reply)
                    for i, result in reply.results:
                        settled.add(i)
                        if not self.port.settle(jobs[i], result):
                            return  # the disk is full or refuses writes: the crawl is stopping
            except ray_actor.RayTaskError as e:  # our code raised in the actor (say, the store refused it): say why
                cause = str(e.cause if getattr(e, "cause", None) is not None else e).strip().splitlines()
                self.port.stop.request(Stop.EXECUTOR_FAILED, f"download worker {index} failed: "
                                        f"{(cause[-1] if cause else type(e).__name__)[:300]}")
                return
            except ray_actor.RayError as e:  # the actor died or cannot be reached
                failures += 1
                self._restarted.add(index)
                batch.jobs = [job for i, job in enumerate(jobs) if i not in settled]
                batch.attempts += 1
                if not batch.jobs:
                    self._done()
                elif batch.attempts >= BATCH_ATTEMPTS:  # it may be what kills them: give it up, not every actor
                    self.port.log(f"{len(batch.jobs)} image(s) failed: their download worker died {batch.attempts} times")
                    died = Fetched("failed", reason="worker-died",
                                   error=f"the download worker died {batch.attempts} times ({type(e).__name__})")
                    try:
                        if not all(self.port.settle(job, died) for job in batch.jobs):
                            return
                    finally:
                        self._done()
                    continue
                else:
                    self.requeued += len(batch.jobs)
                    self._batches.put_nowait(batch)  # any live actor takes it; its permit stays taken
                    self.port.log(f"download worker {index} failed ({type(e).__name__}); "
                                  f"{len(batch.jobs)} image(s) go back to the queue")
                if failures >= _SLOT_FAILURES:
                    self._retire()
                    return
                # Ray is restarting the actor: none of its slots takes work until then.
                self._down_until[index] = max(self._down_until[index], loop.time() + min(0.5 * 2 ** failures, 10.0))
                continue
            failures = 0
            self._done()

    def _done(self) -> None:
        """A batch is settled: its permit goes back."""
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
