"""The crawl's statistics in one place, and how they are shown while it runs.

On a terminal a single live line (images/s, MB/s, done/failed, queue depth) is redrawn in place;
elsewhere a plain log line is printed every few seconds so a log file shows the crawl is alive.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, TextIO


@dataclass(slots=True)
class CrawlStats:
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    failed: int = 0
    gone: int = 0
    bytes: int = 0
    skipped_done: int = 0  # already in the mirror
    duplicates: int = 0  # seen earlier in this run (pages overlap)
    invalid: int = 0  # items the API sent that cannot be mirrored
    retried_failures: int = 0  # earlier failures queued again
    failures: Counter[str] = field(default_factory=Counter)
    filtered: Counter[str] = field(default_factory=Counter)  # skipped by a dataset filter, by reason

    def elapsed(self) -> float:
        return max(1e-9, time.monotonic() - self.started)

    def as_dict(self) -> dict[str, object]:
        return {"done": self.done, "failed": self.failed, "gone": self.gone, "bytes": self.bytes,
                "skipped_done": self.skipped_done, "duplicates": self.duplicates, "invalid": self.invalid,
                "retried_failures": self.retried_failures, "failures": dict(self.failures),
                "filtered": dict(self.filtered),
                "seconds": round(self.elapsed(), 3)}


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
