"""The crawl's lifecycle: producer -> bounded queue -> executor -> settle -> manifest, with one owner of shutdown.

`Crawl.run()` locks the mirror, loads what earlier runs settled, follows the feed from the last safe
checkpoint, and ends with one stop reason (the feed ended, --max-images, interrupted, an API error,
a repeated cursor, disk full) that is printed, recorded in the manifest and turned into the exit code.
The stages live beside it: `chains` (the producer), `executor`/`local`/`ray_executor` (the downloads),
`settle` (results into records), `periodic` (flush, commit), `progress` (the live line, its ETA),
`finish` (the end).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from crawler.config import settings as config_mod
from crawler.config.settings import CrawlConfig
from crawler.feed.items import Job
from crawler.feed.pages import Feed, FeedCounters, Position
from crawler.feed.partitions import Partition, plan_identity
from crawler.feed.selection import Quota, Selector
from crawler.fetch.download import DownloadCounters
from crawler.keys import KeySet
from crawler.logs import Logger, plain
from crawler.net.sessions import open_net
from crawler.run import dry_counts, periodic, progress
from crawler.run.chains import Producer, make_chains
from crawler.run.executor import Executor, Port
from crawler.run.finish import Outcome, conclude
from crawler.run.local import LocalPool
from crawler.run.ray_executor import DownloadActors, RayDispatch
from crawler.run.settle import Settler
from crawler.run.stopping import StopControl
from crawler.state import records
from crawler.state.durability import GroupCommit
from crawler.state.fold import ResumeState
from crawler.state.manifest import MANIFEST_NAME, ManifestWriter
from crawler.state.mirror import Mirror
from crawler.stats import CrawlStats
from crawler.stops import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Stop
from crawler.store.errors import DiskFull, StoreError
from crawler.store.paths import make_store
from crawler.urls import redact

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "Crawl", "Outcome"]


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
                 log_file: TextIO | None = None, actors: DownloadActors | None = None, **log_context: Any) -> None:
        """`partitions`: a plan (`civitai-mirror plan`): each runs as its own cursor chain, in parallel,
        into this one mirror, sharing the API rate, the queue and the done-set. `plan_expires`: when
        its period windows stop being safe (`partitions.expires`); the crawl stops there. `log_file`: the
        open --log-file, which gets every log line too. `actors`: --executor ray's download actors when the
        caller keeps them across crawls (follow); None: the crawl places its own."""
        self.plan_expires = plan_expires
        self.cfg = cfg
        self.log_stream = log
        self.logger = Logger(log, cfg.log_format, also=log_file, **log_context)  # log_file: --log-file, opened
        self.rng = random.Random(seed)
        self.stats = CrawlStats()
        self.query = query or cfg.query_identity()  # follow keeps one identity across passes with moving --since
        self.quiet = quiet  # follow reports passes itself: no start/stop lines per pass
        self.resume = resume
        self.retry_due = retry_due
        self.track_newest = track_newest
        self.newest: datetime | None = None  # the newest createdAt listed (follow's high-water mark)
        self.stop = StopControl()
        self._queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=max(2 * cfg.concurrency, 64))
        self._writer: ManifestWriter | None = None
        self.chains = make_chains(cfg, self.query, partitions)
        if partitions:
            self.query = plan_identity([chain.query for chain in self.chains])
        self._api_counters = FeedCounters()  # all chains' requests and pages together
        self._executor: Executor | None = None
        self.actors = actors
        self._invalid_logged = 0

    # -- control (signals, follow, metrics) ----------------------------------------------------

    def request_stop(self, reason: Stop = Stop.INTERRUPTED,
                     message: str = "interrupted by a signal; rerun the same command to resume") -> None:
        """First signal: stop taking work, let in-flight downloads finish (up to the grace period)."""
        self.stop.request(reason, message)

    def force_exit(self) -> None:
        """Second signal: leave now. Records already made are flushed; partial files are only in .partial/."""
        if self._writer is not None:
            try:
                self._writer.flush()
            except OSError:
                pass
        self.log("second signal: exiting at once (in-flight downloads are discarded and redone next run)")
        os._exit(EXIT_INTERRUPTED)

    def log(self, message: str, **fields: Any) -> None:
        self.logger.info(message, **fields)

    @property
    def counters(self) -> tuple[FeedCounters, DownloadCounters | None]:
        """(API counters, CDN counters) of the running pass, for metrics; CDN None before it starts."""
        return (self._api_counters, self._executor.counters if self._executor is not None else None)

    def queue_depth(self) -> int:
        return self._queue.qsize()

    # -- the run -------------------------------------------------------------------------------

    async def run(self) -> Outcome:
        async with Mirror(self.cfg.state, self.query, self.log, models=self.cfg.source == "models",
                          images=None if self.cfg.remote else Path(self.cfg.out)) as mirror:
            return await self.run_in(mirror)

    async def run_in(self, mirror: Mirror) -> Outcome:
        # Every record written is folded into the mirror's state: done-set, failures, checkpoints alike.
        state = mirror.state
        writer = self._writer = ManifestWriter(mirror.manifest, on_append=state.feed, counted=(state.covered, state.lines))
        try:
            return await self._run(state, writer)
        finally:
            try:
                writer.close()
            except OSError as e:
                self.log(f"warning: could not finish writing {MANIFEST_NAME}: {e.strerror or e}")
            if writer.broken:
                state.tainted = True  # the next start reads the log itself, not a snapshot of it
            elif (end := writer.end()) is not None:
                # Every record written was folded as it was appended: the snapshot at exit reads none back.
                state.covered, state.lines = end

    async def _run(self, state: ResumeState, writer: ManifestWriter) -> Outcome:
        commits = GroupCommit(writer, fsync=self.cfg.fsync)
        try:
            return await self._run_committing(state, writer, commits)
        finally:
            commits.close()  # the folder fds it holds open on filesystems other than the manifest's

    async def _run_committing(self, state: ResumeState, writer: ManifestWriter, commits: GroupCommit) -> Outcome:
        cfg = self.cfg
        store = make_store(cfg.out, cfg.storage_options())
        try:
            await store.open()
            cleared = await store.clear_leftovers()
        except (StoreError, OSError) as e:
            await store.close()
            raise StoreError(f"--out {cfg.out}: {e}") from None  # one line for `crawl`; an outage for `follow`
        if cleared and store.remote:
            self.log(f"aborted {cleared} unfinished upload(s) left by a killed run")
        self._start(state, writer)
        settler = Settler(writer, state, self.stats, commits, store, self.chains, self.stop, cfg.out)
        try:
            async with open_net(cfg) as net:
                assert net.api is not None and net.api_gate is not None
                for chain in self.chains:  # one API session and rate for every chain
                    chain.feed = Feed.from_config(chain.cfg, net.api, net.api_gate, net.policy, self.rng,
                                                  self._api_counters, log=self.log)
                try:
                    await self._pipeline(state, writer, commits, settler, store)
                except DiskFull as e:  # raised by a manifest write outside the workers
                    self.stop.finish(Stop.DISK_FULL, f"disk full: {e.strerror}")
        finally:
            await store.close()
        reason, message = self.stop.reason
        outcome = conclude(cfg, self.query, writer, reason, message, self.stats, self._api_counters,
                           self.counters[1], self.newest if self.track_newest else None, self._queue.qsize(),
                           None if self.quiet else self.log, self.chains)
        try:
            await commits.commit()  # everything recorded, the run's end included, made durable
        except OSError as e:
            self.log(f"warning: the last group commit failed: {e.strerror or e}")
        return outcome

    def _start(self, state: ResumeState, writer: ManifestWriter) -> None:
        """Where each chain resumes, the run's start record and (unless quiet) its first line."""
        cfg = self.cfg
        resumed = []
        for chain in self.chains:
            # --max-images counts the mirrored images this query lists (the done-set is the mirror's, not
            # the query's): walk from the top to see them all; those pages cost requests, never downloads.
            resume = state.resume_position(chain.query) if self.resume and cfg.max_images is None else None
            chain.start = Position.from_record(resume) if resume else None
            page = resume.get("page") if resume else None
            chain.pages_before = page if isinstance(page, int) and not isinstance(page, bool) and page > 0 else 0
            if resume:
                resumed.append(f"{chain.name + ' ' if chain.name else ''}after checkpoint page {resume.get('page')}")
        start = self.chains[0].start
        if state.durable_upto is None:
            # From here on the log is trusted only as far as a marker vouches for it. Without this one, a
            # run cut off before its first commit leaves a log with no marker at all, which the fold takes
            # whole (as a log from before group commit), unsynced checkpoint and done records included.
            # It vouches for nothing the fold did not trust already: the log before it had no marker.
            writer.append(records.durable(writer.offset, 0, cfg.fsync))
        partitions = [{"name": c.name, "query": c.query, "params": c.cfg.query_summary()} for c in self.chains]
        writer.append(records.run_start(self.query, cfg.query_summary(), config_mod.describe(cfg),
                                        start.to_record() if start else None,
                                        partitions if len(self.chains) > 1 else None))
        if not self.quiet:
            if cfg.deep:
                what = f"--deep proof of query {plain(cfg.query_summary())}"
            elif len(self.chains) == 1:
                what = f"query {plain(cfg.query_summary())}"
            else:
                what = f"{len(self.chains)} partitions of a plan"
            self.log(f"crawl {redact(cfg.api_base)} {what}: {len(state.done)} done, "
                     f"{len(state.failed)} to retry" + (f", resuming {', '.join(resumed)}" if resumed else ""))

    async def _pipeline(self, state: ResumeState, writer: ManifestWriter, commits: GroupCommit, settler: Settler,
                        store: Any) -> None:
        queued, quota = KeySet(), Quota()  # shared: an image listed by two chains is fetched once
        selectors = [Selector(chain.cfg, state.done, state.gone, self.stats, self._invalid, self.track_newest,
                              state.refs, state.by_uuid, chain=n, queued=queued, quota=quota,
                              log=self.log)
                     for n, chain in enumerate(self.chains)]
        port = Port(self._queue, settler.settle, self.stop, self.log)
        producer = Producer(self.chains, selectors, port, settler, self.stats, self._api_counters, self.retry_due)
        executor: Executor = (RayDispatch(self.cfg, port, self.rng.randrange(2**32), self.actors)
                              if self.cfg.executor == "ray"
                              else LocalPool(self.cfg, port, store, self.rng))
        self._executor = executor
        async with executor, asyncio.TaskGroup() as group:
            workers = executor.start(group)
            helpers = [group.create_task(producer.run(state.failed.values())),
                       group.create_task(periodic.flush(writer, state, self.stop)),
                       group.create_task(periodic.commit(commits, self.stop)),
                       group.create_task(periodic.expire_plan(self.plan_expires, self.stop)),
                       group.create_task(periodic.reserve(self.cfg, self.stop)),
                       group.create_task(progress.run(self.cfg, self.stats, self._queue, self._api_counters,
                                                      self.logger, self.log_stream, self._total(state)))]
            helpers.append(group.create_task(self._supervise(helpers[0], workers, port)))
            await asyncio.wait(workers)
            for task in helpers:
                task.cancel()
        self.newest = selectors[0].newest

    async def _supervise(self, producer: asyncio.Task[None], workers: list[asyncio.Task[None]], port: Port) -> None:
        """On a stop: no more paging; idle workers woken; busy ones get the grace period, then are cancelled."""
        await self.stop.stopped()
        producer.cancel()
        port.end()  # busy workers see the stop flag after their current item
        _, late = await asyncio.wait(workers, timeout=self.cfg.shutdown_grace)
        for task in late:
            task.cancel()

    def _total(self, state: ResumeState) -> progress.Total | None:
        """What the ETA counts toward: --max-images, or a saved `--dry-run` count of this query (not for
        follow's later passes, which list only what is new)."""
        count = dry_counts.load(self.cfg.state, self.query) if self.resume else None
        return progress.total(self.cfg.max_images, count, len(state.done))

    def _invalid(self, why: str) -> None:
        if self._invalid_logged < 5:
            self._invalid_logged += 1
            self.log(f"skipping an item the API sent that cannot be mirrored: {why}")
