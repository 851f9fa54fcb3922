"""What runs beside the pipeline until the crawl ends: flushing, group commits, progress, the plan's expiry.

Each is a coroutine the crawl starts in its task group and cancels when the workers are done. A full
disk met here stops the crawl through the stop control.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, TextIO

from crawler.config.settings import CrawlConfig
from crawler.feed.items import Job
from crawler.feed.pages import FeedCounters
from crawler.logs import Logger
from crawler.run.progress import show
from crawler.run.stopping import StopControl
from crawler.state import snapshot
from crawler.state.durability import GroupCommit
from crawler.state.fold import ResumeState
from crawler.state.manifest import ManifestWriter
from crawler.stats import CrawlStats
from crawler.stops import Stop
from crawler.store.errors import DiskFull

SNAPSHOT_EVERY = 250_000  # records between resume snapshots during a run


async def flush(writer: ManifestWriter, state: ResumeState, stop: StopControl) -> None:
    saved_at = 0  # records appended when the last resume snapshot was taken
    while True:
        await asyncio.sleep(writer.flush_seconds)
        try:
            writer.flush()
        except DiskFull as e:
            stop.request(Stop.DISK_FULL, f"disk full: {e.strerror}")
            return
        if writer.appended - saved_at >= SNAPSHOT_EVERY and not writer.broken:
            # A restart after kill -9 then reads at most this many records instead of the whole log.
            try:
                snapshot.save(writer.path, state, (writer.offset - state.covered, writer.appended - saved_at))
            except OSError:
                pass  # only a cache: the next start reads more of the log
            saved_at = writer.appended


async def commit(commits: GroupCommit, stop: StopControl) -> None:
    try:
        await commits.run()
    except DiskFull as e:
        stop.request(Stop.DISK_FULL, f"disk full: {e.strerror}")


async def expire_plan(when: float | None, stop: StopControl) -> None:
    if when is None:
        return
    await asyncio.sleep(max(0.0, when - time.time()))
    stop.request(Stop.PLAN_EXPIRED, "the plan's period windows expired (their overlap has passed): make a new "
                 "plan and rerun with it; done images are not fetched again")


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


async def progress(cfg: CrawlConfig, stats: CrawlStats, queue: asyncio.Queue[Job | None], pages: FeedCounters,
                   logger: Logger, stream: TextIO) -> None:
    """The live line (or a log line every --log-interval) until cancelled."""

    def snapshot_now() -> tuple[int, int, str]:
        extra = ""
        total = cfg.max_images
        if total:
            settled = stats.done + stats.failed + stats.gone
            rate = settled / stats.elapsed()
            eta = (total - settled) / rate if rate > 0 else None
            extra = f" | {settled}/{total}" + (f", ETA {duration(eta)}" if eta is not None else "")
        return queue.qsize(), pages.pages, extra

    def fields() -> dict[str, Any]:
        if not logger.json:
            return {}
        return {"done": stats.done, "failed": stats.failed, "gone": stats.gone, "bytes": stats.bytes,
                "queue": queue.qsize(), "pages": pages.pages}

    await show(stats, snapshot_now, cfg.progress, cfg.log_interval, stream,
               emit=lambda text: logger.info(text, **fields()))
