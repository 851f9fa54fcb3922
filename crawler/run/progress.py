"""How the crawl's statistics are shown while it runs.

On a terminal a single live line (elapsed time, images/s, MB/s, done/failed, queue depth; an ETA when a
total is known) is redrawn in place; elsewhere a plain log line is printed every few seconds so a log
file shows the crawl is alive. With a `--log-file` the file gets the log lines in either mode.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import TextIO

from crawler.logs import clock
from crawler.stats import CrawlStats


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
