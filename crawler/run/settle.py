"""Settling: what became of each job, and where the feed may resume, written as manifest records.

Every record a crawl writes while it runs is built here by `crawler.state.records` (no fields inline)
and appended through the one `ManifestWriter`, which folds it into the mirror's state (done-set,
failures, checkpoints). `settle()` is what executors call for each result; it returns False when
the crawl must stop (the disk is full or refuses writes), after requesting that stop.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, Protocol

from crawler.feed.checkpoints import PageLedger
from crawler.feed.items import Job
from crawler.feed.pages import Position
from crawler.fetch.result import Fetched
from crawler.run.stopping import StopControl
from crawler.state import records
from crawler.state.durability import GroupCommit
from crawler.state.fold import ResumeState
from crawler.state.manifest import ManifestWriter
from crawler.stats import CrawlStats
from crawler.stops import Stop
from crawler.store.errors import DiskFull


class Named(Protocol):
    """A cursor chain as the settler sees it: whose checkpoints these are."""

    @property
    def query(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def pages_before(self) -> int: ...


class Settler:
    """One per crawl pass. `ledgers[n]` tracks chain n's pages: a page is checkpointed once all its jobs settled."""

    def __init__(self, writer: ManifestWriter, state: ResumeState, stats: CrawlStats, commits: GroupCommit,
                 store: Any, chains: Sequence[Named], stop: StopControl, out: str) -> None:
        self.writer = writer
        self.state = state
        self.stats = stats
        self.commits = commits
        self.store = store  # DiskStore or RemoteStore: `remote`, `path(rel)`
        self.stop = stop
        self.out = out
        self.ledgers = [PageLedger(partial(self._checkpoint, chain.query, chain.name, chain.pages_before))
                        for chain in chains]

    def settle(self, job: Job, result: Fetched) -> bool:
        """Record what became of a job (from either executor); False when the crawl must stop (disk)."""
        status = result.status
        if status == "disk-full":
            self.stop.request(Stop.DISK_FULL, f"disk full: {result.error}; free space and rerun to resume")
            return False
        if status == "disk-error":  # the mirror's disk refuses writes (permissions, I/O error): no point going on
            self.stop.request(Stop.DISK_ERROR, f"cannot write into {self.out}: {result.error}; "
                              "fix the disk and rerun to resume")
            return False
        stats = self.stats
        try:
            if status == "done":
                assert result.path is not None and result.sha256 is not None
                stats.done += 1
                stats.bytes += result.bytes
                self.writer.append(records.done(job, job.item, job.width, result.path, result.sha256, result.bytes,
                                                result.content_type))
                if not self.store.remote:  # an object is durable once its upload completed; a file after fsync
                    self.commits.add(self.store.path(result.path))
            elif status == "gone":
                stats.gone += 1
                self.writer.append(records.gone(job, result.error))
            else:
                reason = str(result.reason)
                stats.failed += 1
                stats.failures[reason] += 1
                earlier = self.state.failed.get(job.key)
                attempts = (earlier.get("attempts") or 1) + 1 if earlier else 1
                self.writer.append(records.failed(job, job.item, reason, result.error, attempts))
            self.ledgers[job.chain].settle(job.page)  # may append a checkpoint record
        except DiskFull as e:
            self.stop.request(Stop.DISK_FULL, f"disk full: {e.strerror}; free space and rerun to resume")
            return False
        return True

    def refs(self, jobs: list[Job]) -> None:
        """Images already mirrored (or queued) reached again from another model version: note each source."""
        for job in jobs:
            self.writer.append(records.ref(job))
        jobs.clear()

    def _checkpoint(self, query: str, name: str, before: int, page: int, following: Position | None) -> None:
        """`page` counts this run's pages; the record counts the chain's pages over every run."""
        self.writer.append(records.checkpoint(query, before + page, (following or Position()).to_record(),
                                              following is None, name))
