"""What runs beside the pipeline until the crawl ends: flushing, group commits, the disk reserve, the plan's expiry.

Each is a coroutine the crawl starts in its task group and cancels when the workers are done. A full
disk met here stops the crawl through the stop control.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from crawler.config.quantities import show_size
from crawler.config.settings import CrawlConfig
from crawler.logs import clock
from crawler.run.stopping import StopControl
from crawler.state import snapshot
from crawler.state.durability import GroupCommit
from crawler.state.fold import ResumeState
from crawler.state.manifest import ManifestWriter
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
                snapshot.save(writer.path, state, writer.end())
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


async def reserve(cfg: CrawlConfig, stop: StopControl, every: float = 1.0) -> None:
    """--min-free: a clean, resumable stop (`disk-reserve`) once the mirror's disk (or the state's) has less free.

    Checked at the start and then every second, so at most a second of downloads lands below the reserve."""
    if cfg.min_free is None:
        return
    reason = Stop.DISK_RESERVE
    folders = {cfg.state} | (set() if cfg.remote else {Path(cfg.out)})
    while True:
        for folder in folders:
            try:
                free = shutil.disk_usage(_existing(folder)).free
            except OSError:
                continue  # an unreadable disk is reported by the writes themselves
            if free < cfg.min_free:
                stop.request(reason, f"--min-free {show_size(cfg.min_free)}: {folder} has {show_size_mb(free)} "
                             "free; free some space (or lower --min-free) and rerun the same command to resume")
                return
        await asyncio.sleep(every)


def _existing(folder: Path) -> Path:
    """`folder`, or the nearest parent that exists (the mirror may not be created yet)."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def show_size_mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def duration(seconds: float) -> str:
    return clock(seconds)
