"""How the crawl's statistics are shown while it runs.

On a terminal a single live line (images/s, MB/s, done/failed, queue depth) is redrawn in place;
elsewhere a plain log line is printed every few seconds so a log file shows the crawl is alive.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import TextIO

from crawler.stats import CrawlStats


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f}"


def line(stats: CrawlStats, queue_depth: int, pages: int, extra: str = "") -> str:
    seconds = stats.elapsed()
    return (f"{stats.done} done, {stats.failed} failed, {stats.gone} gone, {stats.skipped_done} skipped | "
            f"{stats.done / seconds:.1f} img/s, {_mb(stats.bytes / seconds)} MB/s, {_mb(stats.bytes)} MB | "
            f"pages {pages}, queue {queue_depth}{extra}")


async def show(stats: CrawlStats, snapshot: Callable[[], tuple[int, int, str]], mode: str, interval: float,
               stream: TextIO = sys.stderr, emit: Callable[[str], None] | None = None) -> None:
    """Redraw until cancelled. `snapshot()` gives (queue depth, pages, extra text); `emit` writes log lines."""
    live = mode == "live" or (mode == "auto" and stream.isatty())
    if mode == "none":
        return
    period = 0.5 if live else interval
    try:
        while True:
            await asyncio.sleep(period)
            text = line(stats, *snapshot())
            if live:
                stream.write("\r\x1b[2K" + text)
                stream.flush()
            elif emit is not None:
                emit(text)
            else:
                stream.write(time.strftime("%H:%M:%S ") + text + "\n")
                stream.flush()
    finally:
        if live:
            stream.write("\r\x1b[2K")
            stream.flush()
