"""How the crawl's statistics are shown while it runs.

On a terminal a single live line (elapsed time, images/s, MB/s, done/failed, queue depth; an ETA when a
total is known) is redrawn in place; elsewhere a plain log line is printed every few seconds so a log
file shows the crawl is alive. With a `--log-file` the file gets the log lines in either mode.

A total is known from --max-images, or from a `crawl --dry-run` of the same query saved in the mirror
(`dry_counts`); with both, the smaller wins. The ETA is what is left of it over the run's rate so far.
A dry-run count is as old as the dry run: images mirrored since (by any query of this mirror) are taken
to be this query's, so a mirror shared by several queries may show a short ETA; a new dry run fixes it.
A count all of whose images are mirrored gives no ETA (a rerun fetches only what is new since).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from crawler.config.settings import CrawlConfig
from crawler.feed.pages import FeedCounters
from crawler.logs import Logger, clock
from crawler.run.dry_counts import DryCount
from crawler.stats import CrawlStats


@dataclass(frozen=True, slots=True)
class Total:
    """What the ETA counts toward: `images` of the query in the mirror once the run is done.

    `walks_from_top` (--max-images): the run lists the query from the top, so images already mirrored
    are counted as it passes them; otherwise `held_before` of them were there when it started."""

    images: int
    held_before: int = 0
    walks_from_top: bool = True
    label: str = ""  # what the total is, when not --max-images

    def held(self, stats: CrawlStats) -> int:
        settled = stats.done + stats.failed + stats.gone
        return min(self.images, settled + (stats.skipped_done if self.walks_from_top else self.held_before))


def total(max_images: int | None, count: DryCount | None, mirrored_now: int) -> Total | None:
    """The total a run works toward: --max-images, a dry run's `count` of the query, the smaller of both.

    `mirrored_now`: the mirror's done images when the run starts (the count says how many it had then)."""
    if max_images:
        # The run walks from the top: only a count of the whole query (not from a checkpoint) compares.
        if count is not None and count.from_top and count.matched < max_images:
            return Total(count.matched, label=" (dry-run count)")
        return Total(max_images)
    if count is None:
        return None
    remaining = max(0, count.to_fetch - max(0, mirrored_now - count.mirrored))
    if remaining == 0:  # all it counted is mirrored: a rerun fetches only what is new since, which it never saw
        return None
    return Total(count.matched, count.matched - remaining, walks_from_top=False, label=" (dry-run count)")


def eta(stats: CrawlStats, known: Total) -> str:
    """` | held/total, ETA 3m10s` (no ETA before the first image settles)."""
    settled = stats.done + stats.failed + stats.gone
    held = known.held(stats)
    rate = settled / stats.elapsed()
    left = (known.images - held) / rate if rate > 0 else None
    return f" | {held}/{known.images}{known.label}" + (f", ETA {clock(left)}" if left is not None else "")


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f}"


def line(stats: CrawlStats, queue_depth: int, pages: int, extra: str = "") -> str:
    seconds = stats.elapsed()
    filtered = sum(stats.filtered.values())
    return (f"{stats.done} done, {stats.failed} failed, {stats.gone} gone, {stats.skipped_done} already mirrored"
            + (f", {filtered} filtered out" if filtered else "") + " | "
            f"{clock(seconds)} elapsed, {stats.done / seconds:.1f} img/s, {_mb(stats.bytes / seconds)} MB/s, "
            f"{_mb(stats.bytes)} MB | pages {pages}, queue {queue_depth}{extra}")


async def show(stats: CrawlStats, snapshot: Callable[[], tuple[int, int, str]], mode: str, interval: float,
               stream: TextIO = sys.stderr, emit: Callable[[str], None] | None = None,
               side: Callable[[str], None] | None = None) -> None:
    """Redraw until cancelled. `snapshot()` gives (queue depth, pages, extra text); `emit` writes log lines;
    `side` (a log file) gets a log line every `interval` while the terminal shows the live line."""
    live = mode == "live" or (mode == "auto" and stream.isatty())
    if mode == "none" and side is None:
        return
    period = 0.5 if live else interval
    next_side = time.monotonic() + interval
    try:
        while True:
            await asyncio.sleep(period)
            text = line(stats, *snapshot())
            if mode == "none":
                side(text)  # type: ignore[misc]
            elif live:
                stream.write("\r\x1b[2K" + text)
                stream.flush()
                if side is not None and time.monotonic() >= next_side:
                    next_side += interval
                    side(text)
            elif emit is not None:
                emit(text)
            else:
                stream.write(time.strftime("%H:%M:%S ") + text + "\n")
                stream.flush()
    finally:
        if live:
            stream.write("\r\x1b[2K")
            stream.flush()


async def run(cfg: CrawlConfig, stats: CrawlStats, queue: asyncio.Queue[Any], pages: FeedCounters,
              logger: Logger, stream: TextIO, known: Total | None) -> None:
    """The crawl's progress (live line, or a log line every --log-interval) until cancelled; `known`
    (`total()`) adds the ETA."""

    def snapshot_now() -> tuple[int, int, str]:
        return queue.qsize(), pages.pages, eta(stats, known) if known is not None else ""

    def fields() -> dict[str, Any]:
        if not logger.json:
            return {}
        return {"done": stats.done, "failed": stats.failed, "gone": stats.gone, "bytes": stats.bytes,
                "queue": queue.qsize(), "pages": pages.pages}

    side = None
    log_mode = cfg.progress == "log" or (cfg.progress == "auto" and not stream.isatty())
    if logger.also is not None and not log_mode:  # (in log mode `emit` reaches the file through `logger`)
        to_file = Logger(logger.also, cfg.log_format, **logger.context)

        def side(text: str) -> None:  # --log-file: log lines in the file whatever the terminal shows
            to_file.info(text, **fields())
    await show(stats, snapshot_now, cfg.progress, cfg.log_interval, stream,
               emit=lambda text: logger.info(text, **fields()), side=side)
