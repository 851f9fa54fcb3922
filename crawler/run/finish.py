"""The end of a crawl pass: its one stop reason becomes an exit code, the run's end record and the last lines.

`conclude()` writes the high-water mark (follow, complete passes only) and the `run` end record with
the pass's counts; a full disk at that point is already the stop reason, so it is not raised again.
A `--deep` proof that finished (complete, or with gaps named) resets its chains' checkpoints, after
every page settled, so that the next run proves the query afresh instead of trusting old edges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from crawler.config.settings import CrawlConfig
from crawler.feed.pages import FeedCounters, Position
from crawler.fetch.download import DownloadCounters
from crawler.logs import counts as listed
from crawler.run.chains import Chain, make_chains
from crawler.run.progress import line
from crawler.state import records
from crawler.state.manifest import ManifestWriter
from crawler.stats import CrawlStats
from crawler.stops import COMPLETE, Stop, exit_code
from crawler.store.errors import DiskFull


@dataclass(frozen=True, slots=True)
class Outcome:
    reason: str
    message: str
    stats: CrawlStats
    exit_code: int


def conclude(cfg: CrawlConfig, query: str, writer: ManifestWriter, reason: Stop, message: str, stats: CrawlStats,
             api: FeedCounters, cdn: DownloadCounters | None, newest: datetime | None, queued: int,
             log: Callable[[str], None] | None, chains: list[Chain] | None = None) -> Outcome:
    """`newest`: follow's high-water mark candidate (recorded only when the pass completed); `log` None: quiet;
    `chains`: the chains that ran (a plan's, with --deep), reset when their proof is complete."""
    code = exit_code(reason, stats.failed)
    counts = stats.as_dict()
    counts.update(api_requests=api.requests, api_retries=api.retries, api_throttled=api.throttled, pages=api.pages,
                  cdn_requests=cdn.requests if cdn else 0, cdn_retries=cdn.retries if cdn else 0,
                  cdn_throttled=cdn.throttled if cdn else 0, levels=dict(api.levels), cursor_restarts=api.restarts)
    try:
        if reason in COMPLETE and newest is not None:
            writer.append(records.hwm(query, newest.isoformat()))
        if cfg.deep and reason in (Stop.FEED_ENDED, Stop.GAPS_REMAIN):
            for chain in chains if chains is not None else make_chains(cfg, query, None):
                writer.append(records.checkpoint(chain.query, 0, Position().to_record(), True, chain.name))
        writer.append(records.run_end(query, reason, message, code, cfg.query_summary(), counts))
        writer.flush()
    except DiskFull:
        pass  # the stop reason already says the disk is full; everything earlier was written
    if log is not None:
        log(line(stats, queued, api.pages))
        if stats.filtered:
            log(f"filtered out: {listed(stats.filtered, most=len(stats.filtered))}")
        log(f"stopped: {message}")
        if stats.failed:
            log(f"{stats.failed} image(s) failed ({listed(stats.failures)}); `civitai-mirror status` lists them, "
                "a rerun retries them")
    return Outcome(reason, message, stats, code)
