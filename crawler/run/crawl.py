"""The crawl's lifecycle: producer -> bounded queue -> download workers -> manifest, with one owner of shutdown.

`Crawl.run()` locks the mirror, loads what earlier runs settled, follows the feed from the last safe
checkpoint, and ends with one stop reason (the feed ended, --max-images, interrupted, an API error,
a repeated cursor, disk full) that is printed, recorded in the manifest and turned into the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, TextIO

import aiohttp

from crawler.config import settings as config_mod
from crawler.state import snapshot
from crawler.feed.checkpoints import PageLedger
from crawler.config.settings import CrawlConfig
from crawler.fetch.download import Downloader
from crawler.state.durability import GroupCommit
from crawler.feed.items import Job
from crawler.net.limits import HostGate
from crawler.logs import Logger
from crawler.state.mirror import Mirror
from crawler.state.manifest import MANIFEST_NAME, ManifestWriter
from crawler.store.errors import DiskFull
from crawler.state.fold import ResumeState
from crawler.keys import KeySet
from crawler.feed.pages import Feed, FeedCounters, FeedStopped, Position
from crawler.feed.partitions import Partition, apply_partition, plan_identity
from crawler.stats import CrawlStats
from crawler.run.progress import line, show
from crawler.net.retry import Fatal, RequestFailed, RetryPolicy
from crawler.store.errors import StoreError
from crawler.store.paths import make_store
from crawler.feed.selection import Quota, Selector, plan
from crawler.urls import redact

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# Reasons after which everything asked for was attempted.
SNAPSHOT_EVERY = 250_000  # records between resume snapshots during a run
COMPLETE = ("feed-ended", "max-images", "max-pages", "since-reached")


@dataclass(slots=True)
class Chain:
    """One cursor chain: the whole query, or one partition of a plan, with its own checkpoints."""

    cfg: CrawlConfig  # the crawl's settings with the partition's applied
    query: str  # its identity: checkpoints are recorded and resumed per chain
    name: str
    ledger: PageLedger
    start: Position | None = None
    feed: Feed | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    reason: str
    message: str
    stats: CrawlStats
    exit_code: int


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Crawl:
    """One crawl (or one pass of `follow`) of the feed into a mirror.

    `run()` opens the mirror itself; `run_in(mirror)` runs inside one opened by the caller, keeping its
    in-memory state current (follow). `resume=False` ignores the checkpoint (follow's later passes
    start from the top); `retry_due(record)` says which earlier failures to retry now.
    """

    def __init__(self, cfg: CrawlConfig, log: TextIO = sys.stderr, seed: int | None = None, *,
                 resume: bool = True, retry_due: Callable[[dict[str, Any]], bool] | None = None,
                 track_newest: bool = False, query: str | None = None, quiet: bool = False,
                 partitions: list[Partition] | None = None, plan_expires: float | None = None,
                 **log_context: Any) -> None:
        """`partitions`: a plan (`civitai-mirror plan`): each runs as its own cursor chain, in parallel,
        into this one mirror, sharing the API rate, the queue and the done-set. `plan_expires`: when
        its period windows stop being safe (`partitions.expires`); the crawl stops there."""
        self.plan_expires = plan_expires
        self.cfg = cfg
        self.log_stream = log
        self.logger = Logger(log, cfg.log_format, **log_context)
        self.rng = random.Random(seed)
        self.stats = CrawlStats()
        self.query = query or cfg.query_identity()  # follow keeps one identity across passes with moving --since
        self.quiet = quiet  # follow reports passes itself: no start/stop lines per pass
        self.resume = resume
        self.retry_due = retry_due
        self.track_newest = track_newest
        self.newest: datetime | None = None  # the newest createdAt listed (follow's high-water mark)
        self._stop = asyncio.Event()
        self._reason: tuple[str, str] | None = None
        self._queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=max(2 * cfg.concurrency, 64))
        self._writer: ManifestWriter | None = None
        self._commits: GroupCommit | None = None
        self.chains = self._make_chains(partitions)
        if partitions:
            self.query = plan_identity([chain.query for chain in self.chains])
        self._api_counters = FeedCounters()  # all chains' requests and pages together
        self._downloader: Downloader | None = None  # the local executor's
        self._executor: Any = None  # ray_executor.RayDispatch with --executor ray
        self._consumers = cfg.concurrency
        self._state: ResumeState | None = None
        self._store: Any = None
        self._invalid_logged = 0

    def _make_chains(self, partitions: list[Partition] | None) -> list[Chain]:
        def chain(cfg: CrawlConfig, query: str, name: str) -> Chain:
            made = Chain(cfg, query, name, PageLedger(lambda page, following: self._checkpoint(made, page, following)))
            return made
        if not partitions:
            return [chain(self.cfg, self.query, "")]
        chains = []
        for partition in partitions:
            cfg = apply_partition(self.cfg, partition)
            chains.append(chain(cfg, cfg.query_identity(), partition.name))
        return chains

    # -- lifecycle ---------------------------------------------------------------------------

    def request_stop(self, reason: str = "interrupted", message: str = "interrupted by a signal; rerun the same command to resume") -> None:
        """First signal: stop taking work, let in-flight downloads finish (up to the grace period)."""
        if self._reason is not None and self._reason[0] in COMPLETE:
            # The feed had ended (or a limit was reached) but queued images were still being fetched:
            # the crawl did not complete, and this is why.
            self._reason = None
        self._finish(reason, message)
        self._stop.set()

    def force_exit(self) -> None:
        """Second signal: leave now. Records already made are flushed; partial files are only in .partial/."""
        if self._writer is not None:
            try:
                self._writer.flush()
            except OSError:
                pass
        self.log("second signal: exiting at once (in-flight downloads are discarded and redone next run)")
        os._exit(EXIT_INTERRUPTED)

    def _finish(self, reason: str, message: str) -> None:
        if self._reason is None:  # the first cause wins: it is why the crawl stopped
            self._reason = (reason, message)

    def log(self, message: str, **fields: Any) -> None:
        self.logger.info(message, **fields)

    @property
    def counters(self) -> tuple[Any, Any]:
        """(API counters, CDN counters) of the running pass, for metrics; None before it starts."""
        return (self._api_counters, self._cdn_counters())

    def _cdn_counters(self) -> Any:
        if self._executor is not None:
            return self._executor.counters
        return self._downloader.counters if self._downloader else None

    def queue_depth(self) -> int:
        return self._queue.qsize()

    # What an executor needs of the crawl: the jobs, whether to go on, and `settle()` for each result.
    @property
    def queue(self) -> asyncio.Queue[Job | None]:
        return self._queue

    def stopping(self) -> bool:
        return self._stop.is_set()

    async def stopped(self) -> None:
        await self._stop.wait()

    async def run(self) -> Outcome:
        async with Mirror(self.cfg.state, self.query, self.log, models=self.cfg.source == "models",
                          images=None if self.cfg.remote else Path(self.cfg.out)) as mirror:
            return await self.run_in(mirror)

    async def run_in(self, mirror: Mirror) -> Outcome:
        self._state = mirror.state
        # Every record written is folded into the mirror's state: done-set, failures, checkpoints alike.
        self._writer = ManifestWriter(mirror.manifest, on_append=mirror.state.feed)
        self._commits = GroupCommit(self._writer, fsync=self.cfg.fsync)
        try:
            return await self._run(mirror.state)
        finally:
            try:
                self._writer.close()
            except OSError as e:
                self.log(f"warning: could not finish writing {MANIFEST_NAME}: {e.strerror or e}")
            if self._writer.broken:
                mirror.state.tainted = True  # the next start reads the log itself, not a snapshot of it

    async def _run(self, state: ResumeState) -> Outcome:
        cfg = self.cfg
        assert self._writer is not None
        store = self._store = make_store(cfg.out, cfg.storage_options())
        try:
            await store.open()
            cleared = await store.clear_leftovers()
        except (StoreError, OSError) as e:
            await store.close()
            raise StoreError(f"--out {cfg.out}: {e}") from None  # one line for `crawl`; an outage for `follow`
        if cleared and store.remote:
            self.log(f"aborted {cleared} unfinished upload(s) left by a killed run")
        resumed = []
        for chain in self.chains:
            resume = state.resume_position(chain.query) if self.resume else None
            chain.start = Position.from_record(resume) if resume else None
            if resume:
                resumed.append(f"{chain.name + ' ' if chain.name else ''}after checkpoint page {resume.get('page')}")
        start = self.chains[0].start
        record: dict[str, Any] = {"kind": "run", "event": "start", "query": self.query, "params": cfg.query_summary(),
                                  "settings": config_mod.describe(cfg), "resume": start.to_record() if start else None,
                                  "t": time.time()}
        if len(self.chains) > 1:
            record["partitions"] = [{"name": c.name, "query": c.query, "params": c.cfg.query_summary()} for c in self.chains]
        self._writer.append(record)
        if not self.quiet:
            what = f"query {cfg.query_summary()}" if len(self.chains) == 1 else f"{len(self.chains)} partitions of a plan"
            self.log(f"crawl {redact(cfg.api_base)} {what}: {len(state.done)} done, "
                     f"{len(state.failed)} to retry" + (f", resuming {', '.join(resumed)}" if resumed else ""))
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=cfg.timeout, sock_read=cfg.timeout)
        policy = RetryPolicy(cfg.retries, cfg.backoff_base, cfg.backoff_max)
        try:
            async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=4)) as api_session:
                api_gate = HostGate(cfg.api_rps)  # one API rate for every chain
                for chain in self.chains:
                    c = chain.cfg
                    chain.feed = Feed(api_session, c.api_base, c.api_params(), api_gate, policy, self.rng, c.api_key,
                                      config_mod.USER_AGENT, c.max_empty_pages, c.endpoint(), self._api_counters)
                try:
                    await self._pipeline(state, policy)
                except DiskFull as e:  # raised by a manifest write outside the workers
                    self._finish("disk-full", f"disk full: {e.strerror}")
        finally:
            await store.close()
        outcome = self._conclude()
        try:
            await self._commits.commit()  # everything recorded, the run's end included, made durable
        except OSError as e:
            self.log(f"warning: the last group commit failed: {e.strerror or e}")
        return outcome

    async def _pipeline(self, state: ResumeState, policy: RetryPolicy) -> None:
        queued, quota = KeySet(), Quota()  # shared: an image listed by two chains is fetched once
        selectors = [Selector(chain.cfg, state.done, state.gone, self.stats, self._invalid, self.track_newest,
                              state.refs, state.by_uuid, chain=n, queued=queued, quota=quota)
                     for n, chain in enumerate(self.chains)]
        async with contextlib.AsyncExitStack() as stack:
            if self.cfg.executor == "ray":
                from crawler.run.ray_executor import RayDispatch
                executor = self._executor = RayDispatch(self, self.cfg)
                await stack.enter_async_context(executor)
            else:
                timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.cfg.timeout, sock_read=self.cfg.timeout)
                cdn_session = await stack.enter_async_context(aiohttp.ClientSession(
                    timeout=timeout, auto_decompress=False,
                    connector=aiohttp.TCPConnector(limit=self.cfg.concurrency, ttl_dns_cache=300)))
                self._downloader = Downloader(cdn_session, HostGate(self.cfg.cdn_rps), policy, self._store,
                                              self.cfg.allowed_hosts, self.cfg.max_bytes, config_mod.USER_AGENT, self.rng)
            await self._run_tasks(state, selectors)

    async def _run_tasks(self, state: ResumeState, selectors: list[Selector]) -> None:
        async with asyncio.TaskGroup() as group:
            if self._executor is not None:
                workers = self._executor.start(group)
                self._consumers = 1  # the executor's feeder
            else:
                workers = [group.create_task(self._work(self._downloader)) for _ in range(self.cfg.concurrency)]
                self._consumers = len(workers)
            producer = group.create_task(self._produce(state, selectors))
            supervisor = group.create_task(self._supervise(producer, workers))
            flusher = group.create_task(self._flush_periodically())
            expiry = group.create_task(self._expire_plan())
            committer = group.create_task(self._commit_periodically())
            display = group.create_task(show(self.stats, self._snapshot, self.cfg.progress, self.cfg.log_interval,
                                             self.log_stream, emit=lambda text: self.log(text, **self._progress_fields())))
            await asyncio.wait(workers)
            for task in (producer, supervisor, flusher, committer, display, expiry):
                task.cancel()
        self.newest = selectors[0].newest

    async def _expire_plan(self) -> None:
        if self.plan_expires is None:
            return
        await asyncio.sleep(max(0.0, self.plan_expires - time.time()))
        self.request_stop("plan-expired", "the plan's period windows expired (their overlap has passed): make a new "
                          "plan and rerun with it; done images are not fetched again")

    async def _commit_periodically(self) -> None:
        assert self._commits is not None
        try:
            await self._commits.run()
        except DiskFull as e:
            self.request_stop("disk-full", f"disk full: {e.strerror}")

    async def _supervise(self, producer: asyncio.Task, workers: list[asyncio.Task]) -> None:
        await self._stop.wait()
        producer.cancel()
        for _ in workers:  # wake idle workers; busy ones see the stop flag after their current item
            try:
                self._queue.put_nowait(None)
            except asyncio.QueueFull:
                break
        _, late = await asyncio.wait(workers, timeout=self.cfg.shutdown_grace)
        for task in late:
            task.cancel()

    async def _flush_periodically(self) -> None:
        assert self._writer is not None and self._state is not None
        writer, state = self._writer, self._state
        saved_at = 0  # records appended when the last resume snapshot was taken
        while True:
            await asyncio.sleep(writer.flush_seconds)
            try:
                writer.flush()
            except DiskFull as e:
                self.request_stop("disk-full", f"disk full: {e.strerror}")
                return
            if writer.appended - saved_at >= SNAPSHOT_EVERY and not writer.broken:
                # A restart after kill -9 then reads at most this many records instead of the whole log.
                try:
                    snapshot.save(writer.path, state, (writer.offset - state.covered, writer.appended - saved_at))
                except OSError:
                    pass  # only a cache: the next start reads more of the log
                saved_at = writer.appended

    def _progress_fields(self) -> dict[str, Any]:
        if not self.logger.json:
            return {}
        return {"done": self.stats.done, "failed": self.stats.failed, "gone": self.stats.gone, "bytes": self.stats.bytes,
                "queue": self._queue.qsize(), "pages": self._api_counters.pages}

    def _snapshot(self) -> tuple[int, int, str]:
        pages = self._api_counters.pages
        extra = ""
        total = self.cfg.max_images
        if total:
            settled = self.stats.done + self.stats.failed + self.stats.gone
            rate = settled / self.stats.elapsed()
            eta = (total - settled) / rate if rate > 0 else None
            extra = f" | {settled}/{total}" + (f", ETA {_duration(eta)}" if eta is not None else "")
        return self._queue.qsize(), pages, extra

    # -- producer ------------------------------------------------------------------------------

    async def _produce(self, state: ResumeState, selectors: list[Selector]) -> None:
        first = selectors[0]
        for record in list(state.failed.values()):
            if self.retry_due is not None and not self.retry_due(record):
                continue
            source = record.get("source") if isinstance(record.get("source"), str) else None
            job = first.job(record.get("item"), None, source)
            if job is not None and first.claim(job):
                self.stats.retried_failures += 1
                await self._queue.put(job)
        if len(self.chains) == 1:
            ends = [await self._produce_chain(self.chains[0], first)]
        else:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._produce_chain(c, s)) for c, s in zip(self.chains, selectors)]
            ends = [task.result() for task in tasks]
        if self._stop.is_set():
            return  # a stop (signal, disk) was requested and gave its own reason
        self._finish(*self._combine(ends))
        for _ in range(self._consumers):  # one end-of-feed mark per consumer of the queue
            await self._queue.put(None)

    def _combine(self, ends: list[tuple[str, str]]) -> tuple[str, str]:
        """The crawl's reason from its chains': the first that did not complete, else they all did."""
        if len(ends) == 1:
            return ends[0]
        named = [(chain.name, reason, message) for chain, (reason, message) in zip(self.chains, ends)]
        for name, reason, message in named:
            if reason not in COMPLETE:
                return reason, f"partition {name}: {message}"
        reasons = [reason for _n, reason, _m in named]
        counts = ", ".join(f"{r}: {reasons.count(r)}" for r in dict.fromkeys(reasons))
        reason = "feed-ended" if set(reasons) == {"feed-ended"} else next(r for r in reasons if r != "feed-ended")
        return reason, f"all {len(ends)} partitions ended ({counts}) after {self._api_counters.pages} page(s)"

    async def _produce_chain(self, chain: Chain, selector: Selector) -> tuple[str, str]:
        """Page one chain into the queue; returns why it stopped."""
        feed = chain.feed
        assert feed is not None
        try:
            async for batch in plan(feed, selector, chain.start):
                self._record_refs(selector)
                # Opened before its jobs are queued, so a fast worker can never settle an unknown page.
                chain.ledger.open_page(batch.page.number, len(batch.jobs), batch.following)
                for job in batch.jobs:
                    await self._queue.put(job)
                if batch.stop is not None:
                    return batch.stop
            return "feed-ended", f"the feed ended (no next cursor) after {feed.counters.pages} page(s)"
        except FeedStopped as e:
            return e.reason, str(e)
        except Fatal as e:
            return "api-refused", f"{e.detail or e.reason} (last request {feed.counters.last_url})"
        except RequestFailed as e:
            return "api-error", f"API error outlived the retries: {e} (last request {feed.counters.last_url})"
        except DiskFull as e:
            self.request_stop("disk-full", f"disk full: {e.strerror}")
            return "disk-full", f"disk full: {e.strerror}"

    def _record_refs(self, selector: Selector) -> None:
        """An image already mirrored (or queued) reached again from another model version: note the source."""
        assert self._writer is not None
        for job in selector.new_refs:
            self._writer.append({"kind": "ref", "id": job.id, "uuid": job.uuid, "source": job.source, "t": time.time()})
        selector.new_refs.clear()

    def _invalid(self, why: str) -> None:
        if self._invalid_logged < 5:
            self._invalid_logged += 1
            self.log(f"skipping an item the API sent that cannot be mirrored: {why}")

    def _checkpoint(self, chain: Chain, page: int, following: Position | None) -> None:
        assert self._writer is not None
        record: dict[str, Any] = {"kind": "checkpoint", "query": chain.query, "page": page, "end": following is None,
                                  "t": time.time()}
        if chain.name:
            record["partition"] = chain.name
        record.update((following or Position()).to_record())
        self._writer.append(record)

    # -- workers -------------------------------------------------------------------------------

    async def _work(self, downloader: Downloader) -> None:
        queue = self._queue
        while not self._stop.is_set():
            job = await queue.get()
            if job is None or self._stop.is_set():
                return
            if not self.settle(job, await downloader.outcome(job.key, job.url)):
                return

    def settle(self, job: Job, result: dict[str, Any]) -> bool:
        """Record what became of a job (from either executor); False when the crawl must stop (disk)."""
        assert self._writer is not None and self._state is not None
        status = result.get("status")
        if status == "disk-full":
            self.request_stop("disk-full", f"disk full: {result.get('error')}; free space and rerun to resume")
            return False
        if status == "disk-error":  # the mirror's disk refuses writes (permissions, I/O error): no point going on
            self.request_stop("disk-error", f"cannot write into {self.cfg.out}: {result.get('error')}; "
                              "fix the disk and rerun to resume")
            return False
        base: dict[str, Any] = {"kind": "image", "id": job.id, "uuid": job.uuid, "url": job.url}
        if job.source is not None:
            base["source"] = job.source
        # Each append is folded into the mirror's state (done-set, failures) by the writer.
        try:
            if status == "done":
                self.stats.done += 1
                self.stats.bytes += result["bytes"]
                self._writer.append({**base, "status": "done", "path": result["path"], "sha256": result["sha256"],
                                     "bytes": result["bytes"], "width": job.width, "content_type": result["content_type"],
                                     "item": job.item, "t": time.time()})
                if not self._store.remote:  # an object is durable once its upload completed; a file after fsync
                    self._commits.add(self._store.path(result["path"]))  # type: ignore[union-attr]
            elif status == "gone":
                self.stats.gone += 1
                self._writer.append({**base, "status": "gone", "error": result.get("error"), "t": time.time()})
            else:
                reason = str(result.get("reason"))
                self.stats.failed += 1
                self.stats.failures[reason] += 1
                earlier = self._state.failed.get(job.key)
                attempts = (earlier.get("attempts") or 1) + 1 if earlier else 1
                self._writer.append({**base, "status": "failed", "reason": reason, "error": result.get("error"),
                                     "attempts": attempts, "item": job.item, "t": time.time()})
            self.chains[job.chain].ledger.settle(job.page)  # may append a checkpoint record
        except DiskFull as e:
            self.request_stop("disk-full", f"disk full: {e.strerror}; free space and rerun to resume")
            return False
        return True

    # -- the end -------------------------------------------------------------------------------

    def _conclude(self) -> Outcome:
        assert self._writer is not None
        api = self._api_counters
        reason, message = self._reason or ("interrupted", "stopped before the feed ended")
        if reason == "interrupted":
            code = EXIT_INTERRUPTED
        elif reason in COMPLETE and not self.stats.failed:
            code = EXIT_OK
        else:
            code = EXIT_FAILED
        counts = self.stats.as_dict()
        cdn = self._cdn_counters()
        counts.update(api_requests=api.requests, api_retries=api.retries, api_throttled=api.throttled, pages=api.pages,
                      cdn_requests=cdn.requests if cdn else 0, cdn_retries=cdn.retries if cdn else 0,
                      cdn_throttled=cdn.throttled if cdn else 0)
        try:
            if self.track_newest and reason in COMPLETE and self.newest is not None:
                self._writer.append({"kind": "hwm", "query": self.query, "created_at": self.newest.isoformat(),
                                     "t": time.time()})
            self._writer.append({"kind": "run", "event": "end", "query": self.query, "reason": reason, "message": message,
                                 "exit_code": code, "params": self.cfg.query_summary(), "counts": counts, "t": time.time()})
            self._writer.flush()
        except DiskFull:
            pass  # the stop reason already says the disk is full; everything earlier was written
        if self.quiet:
            return Outcome(reason, message, self.stats, code)
        self.log(line(self.stats, self._queue.qsize(), api.pages))
        self.log(f"stopped: {message}")
        if self.stats.failed:
            self.log(f"{self.stats.failed} image(s) failed ({dict(self.stats.failures)}); `civitai-mirror status` lists them, "
                     "a rerun retries them")
        return Outcome(reason, message, self.stats, code)

