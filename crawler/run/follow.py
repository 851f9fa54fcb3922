"""`civitai-mirror follow`: keep a mirror current for weeks, one newest-first pass at a time.

The first pass is a full crawl (resumable, bounded by --since/--max-images if given); each later pass
walks the feed from the top only down to the high-water mark (the newest createdAt of the last complete
pass, minus a safety margin), then sleeps --interval with jitter. An API outage of any length is
backed off and retried with one log line when it starts and one when it ends; only a signal, a fatal
answer (bad key, region, bad query) or a full disk ends the process. With --executor ray the download
actors are placed once, when the follow starts, lent to every pass and ended when it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from crawler.config.settings import CrawlConfig
from crawler.logs import Logger
from crawler.normalise import parse_time
from crawler.run import periodic
from crawler.run.crawl import Crawl
from crawler.run.finish import Outcome
from crawler.run.ray_executor import DownloadActors
from crawler.state import compact as compact_mod
from crawler.state.mirror import Mirror
from crawler.stops import COMPLETE, EXIT_FAILED, EXIT_INTERRUPTED, FATAL, Stop
from crawler.store.errors import StoreError

# Items can be listed a little after a newer one (uploads publish late): re-walk this much below the mark.
HIGH_WATER_MARGIN = timedelta(hours=1)
# Give up on an image after this long between retries; `gone` ones are never retried.
MAX_RETRY_DELAY = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class FollowSettings:
    interval: float = 600.0
    passes: int | None = None  # stop after this many passes (tests, cron-like use); None: forever
    jitter: float = 0.1  # +-10 % of the interval, so many mirrors do not hit the API in step
    outage_backoff_max: float = 900.0
    compact_above: int = 256 * 1024 * 1024  # manifest bytes before an automatic compaction is considered


@dataclass(slots=True)
class Totals:
    """Cumulative figures over every pass, for metrics; bounded (keys are statuses and reasons)."""

    images: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    api_statuses: Counter[int] = field(default_factory=Counter)
    cdn_statuses: Counter[int] = field(default_factory=Counter)
    api_throttled: int = 0
    cdn_throttled: int = 0
    api_retries: int = 0
    cdn_retries: int = 0

    def add(self, crawl: Crawl) -> None:
        stats = crawl.stats
        self.images.update(done=stats.done, failed=stats.failed, gone=stats.gone)
        self.failures.update(stats.failures)
        self.bytes += stats.bytes
        api, cdn = crawl.counters
        if api is not None:
            self.api_statuses.update(api.statuses)
            self.api_throttled += api.throttled
            self.api_retries += api.retries
        if cdn is not None:
            self.cdn_statuses.update(cdn.statuses)
            self.cdn_throttled += cdn.throttled
            self.cdn_retries += cdn.retries


class Follower:
    def __init__(self, cfg: CrawlConfig, settings: FollowSettings, log: TextIO,
                 after_pass: Callable[[int, Outcome], Awaitable[None] | None] | None = None,
                 log_file: TextIO | None = None) -> None:
        self.cfg = cfg
        self.settings = settings
        self.log_stream = log
        self.log_file = log_file  # --log-file (opened by the caller): every pass's lines too
        self.logger = Logger(log, cfg.log_format, also=log_file)
        self.query = cfg.query_identity()
        self.after_pass = after_pass
        self.rng = random.Random()
        self.totals = Totals()
        self.current: Crawl | None = None
        self.passes = 0
        self.last_success: float | None = None
        self.up = True
        self.down = "the API"  # what the current outage is of
        self._stop = asyncio.Event()

    def log(self, message: str, **fields: Any) -> None:
        self.logger.info(message, **fields)

    def request_stop(self) -> None:
        self._stop.set()
        if self.current is not None:
            self.current.request_stop()

    def force_exit(self) -> None:
        if self.current is not None:
            self.current.force_exit()
        raise SystemExit(EXIT_INTERRUPTED)

    def retry_due(self, record: dict[str, Any]) -> bool:
        """An earlier failure is retried after interval x 2^(attempts-1), capped at a day."""
        attempts = record.get("attempts") if isinstance(record.get("attempts"), int) else 1
        delay = min(self.settings.interval * 2 ** max(attempts - 1, 0), MAX_RETRY_DELAY)
        when = record.get("t") if isinstance(record.get("t"), (int, float)) else 0.0
        return time.time() - when >= delay

    def _pass_config(self, mirror: Mirror, first: bool) -> CrawlConfig:
        since = self.cfg.since
        mark = parse_time(mirror.state.high_water) if mirror.state.high_water and not first else None
        if mark is not None:
            floor = (mark - HIGH_WATER_MARGIN).isoformat()
            user = parse_time(since) if since else None
            since = floor if user is None or parse_time(floor) > user else since  # type: ignore[operator]
        # --max-images bounds the first pass only: later passes take whatever is new.
        return dataclasses.replace(self.cfg, sort="Newest", since=since,
                                   max_images=self.cfg.max_images if first else None)

    def _actors(self) -> contextlib.AbstractAsyncContextManager[DownloadActors | None]:
        """--executor ray: one set of download actors (and their CDN sessions) for every pass."""
        if self.cfg.executor != "ray":
            return contextlib.nullcontext()
        return DownloadActors(self.cfg, self.rng.randrange(2**32), self.log)

    async def run(self) -> int:
        async with Mirror(self.cfg.state, self.query, self.log,
                          images=None if self.cfg.remote else Path(self.cfg.out)) as mirror, self._actors() as actors:
            outage = 0
            while not self._stop.is_set():
                self.passes += 1
                first = self.passes == 1 and mirror.state.high_water is None
                crawl = Crawl(self._pass_config(mirror, first), self.log_stream, resume=first,
                              retry_due=self.retry_due, track_newest=True, query=self.query, quiet=True,
                              log_file=self.log_file, actors=actors, **{"pass": self.passes})
                self.current = crawl
                try:
                    outcome = await crawl.run_in(mirror)
                except StoreError as e:
                    if self.passes == 1:
                        raise  # a store that never worked is a setting to fix, not an outage
                    outcome = Outcome(Stop.STORE_UNAVAILABLE, str(e), crawl.stats, EXIT_FAILED)
                self.current = None
                self.totals.add(crawl)
                stats = outcome.stats
                if outcome.reason == Stop.INTERRUPTED:
                    self.log(f"pass {self.passes} interrupted: exiting (the next start resumes)")
                    return EXIT_INTERRUPTED
                if outcome.reason in FATAL:
                    self.log(f"stopping: {outcome.message}")
                    return EXIT_FAILED
                if outcome.reason in COMPLETE:
                    if not self.up:
                        self.log(f"{self.down} is back after {outage} failed pass(es)")
                    self.up, outage = True, 0
                    self.last_success = time.time()
                    mirror.state.high_water = crawl.newest.isoformat() if crawl.newest else mirror.state.high_water
                    self.log(f"pass {self.passes}: {stats.done} new, {stats.failed} failed, {stats.gone} gone, "
                             f"{stats.skipped_done} already done; {self._told(crawl.cfg, outcome)}",
                             done=stats.done, failed=stats.failed, gone=stats.gone, reason=outcome.reason)
                    wait = self.settings.interval * (1 + self.rng.uniform(-self.settings.jitter, self.settings.jitter))
                else:
                    outage += 1
                    if self.up:
                        self.down = "the object store" if outcome.reason == Stop.STORE_UNAVAILABLE else "the API"
                        self.log(f"{self.down} is unavailable ({outcome.message}); retrying with backoff, "
                                 "quietly until it is back", reason=outcome.reason)
                    self.up = False
                    base = min(self.settings.interval, 30.0)
                    wait = min(self.settings.outage_backoff_max, base * 2 ** min(outage - 1, 20))
                    wait *= 1 + self.rng.uniform(0, self.settings.jitter)
                self._maybe_compact(mirror)
                if self.after_pass is not None:
                    result = self.after_pass(self.passes, outcome)
                    if result is not None:
                        await result
                if self.settings.passes is not None and self.passes >= self.settings.passes:
                    break
                if self.up and not self._stop.is_set():  # (an outage is retried quietly)
                    at = time.strftime("%H:%M:%S", time.localtime(time.time() + wait))
                    self.log(f"next pass at {at} (in {periodic.duration(wait)})", next_pass_in=round(wait, 1))
                try:
                    await asyncio.wait_for(self._stop.wait(), wait)
                except TimeoutError:
                    pass
            return EXIT_INTERRUPTED if self._stop.is_set() else 0

    def _told(self, pass_cfg: CrawlConfig, outcome: Outcome) -> str:
        """The pass's stop message, in the user's terms: a later pass stops at what earlier passes mirrored,
        not at a --since the user never gave."""
        if outcome.reason != Stop.SINCE_REACHED or pass_cfg.since == self.cfg.since or pass_cfg.since is None:
            return outcome.message
        mark = (f"what earlier passes mirrored (down to {pass_cfg.since}, "
                f"{HIGH_WATER_MARGIN.total_seconds() / 3600:g}h below their newest image)")
        told = outcome.message.replace(f"items older than --since {pass_cfg.since}", mark)
        return told if "--since" not in told else f"reached {mark}"

    def _maybe_compact(self, mirror: Mirror) -> None:
        state = mirror.state
        images = len(state.done) + len(state.gone) + len(state.failed)
        if not compact_mod.worth_compacting(mirror.root, images, self.settings.compact_above):
            return
        result = compact_mod.compact(mirror.root)
        self.log(f"compacted the manifest: {result.records_before} -> {result.records_after} records, "
                 f"{result.bytes_before / 1e6:.1f} -> {result.bytes_after / 1e6:.1f} MB")
        mirror.reload()
