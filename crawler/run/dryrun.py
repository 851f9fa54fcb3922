"""`crawl --dry-run`: walk the pages a crawl would walk and say what it would fetch, fetching no image.

Uses the crawl's own selection (filters, done-set, --max-images/--max-pages/--since), at the API rate
limit, and writes nothing: no lock, no manifest record, no folder.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import aiohttp

from crawler.state import resume
from crawler.config import settings as config_mod
from crawler.config.settings import CrawlConfig
from crawler.feed.items import Job
from crawler.net.limits import HostGate
from crawler.state.manifest import MANIFEST_NAME, iter_records
from crawler.state.fold import ResumeState
from crawler.feed.pages import Feed, FeedStopped, Position
from crawler.stats import CrawlStats
from crawler.net.retry import RequestFailed, RetryPolicy
from crawler.feed.selection import Selector, plan

# CivitAI's JPEGs at default quality; used only when the mirror has nothing to measure yet.
ASSUMED_BYTES_PER_PIXEL = 0.25


@dataclass(frozen=True, slots=True)
class Estimate:
    bytes_per_pixel: float
    how: str


@dataclass(slots=True)
class DryRunReport:
    matched: int = 0  # listed, valid and wanted (new or already done)
    already_done: int = 0
    to_fetch: int = 0
    estimated_bytes: int = 0
    unknown_size: int = 0
    api_calls: int = 0
    pages: int = 0
    reason: str = ""
    message: str = ""
    estimate: Estimate | None = None
    stats: CrawlStats | None = None


def measure_bytes_per_pixel(root: Path, sample: int = 5000) -> Estimate:
    """Bytes per pixel over the mirror's own done images (their recorded width and the item's aspect)."""
    total_bytes = total_pixels = counted = 0
    for record in iter_records(root / MANIFEST_NAME):
        if record["kind"] != "image" or record.get("status") != "done":
            continue
        item = record.get("item") if isinstance(record.get("item"), dict) else {}
        width, full_w, full_h = record.get("width"), item.get("width"), item.get("height")
        size = record.get("bytes")
        if not all(isinstance(v, int) and v > 0 for v in (width, full_w, full_h, size)):
            continue
        total_bytes += size
        total_pixels += width * round(full_h * width / full_w)
        counted += 1
        if counted >= sample:
            break
    if counted == 0:
        return Estimate(ASSUMED_BYTES_PER_PIXEL, f"assumed {ASSUMED_BYTES_PER_PIXEL} bytes/pixel (nothing mirrored yet to measure)")
    bpp = total_bytes / total_pixels
    return Estimate(bpp, f"{bpp:.3f} bytes/pixel measured over {counted} image(s) already in this mirror")


def _pixels(job: Job) -> int | None:
    full_w, full_h = job.item.get("width"), job.item.get("height")
    if not (isinstance(full_w, int) and isinstance(full_h, int) and full_w > 0 and full_h > 0):
        return None
    width = job.width or full_w
    return width * round(full_h * width / full_w)


async def dry_run(cfg: CrawlConfig, log: TextIO = sys.stderr) -> DryRunReport:
    root = cfg.state
    manifest = root / MANIFEST_NAME
    # Read-only: no snapshot saved; model crawls index uuids, as the crawl itself would.
    state = (resume.load(manifest, cfg.query_identity(), cfg.source == "models", save=False)
             if manifest.is_file() else ResumeState())
    report = DryRunReport(stats=CrawlStats())
    report.estimate = measure_bytes_per_pixel(root) if state.done else Estimate(
        ASSUMED_BYTES_PER_PIXEL, f"assumed {ASSUMED_BYTES_PER_PIXEL} bytes/pixel (nothing mirrored yet to measure)")
    selector = Selector(cfg, state.done, state.gone, report.stats, lambda why: None)
    saved = state.resume_position()
    start = Position.from_record(saved) if saved else None
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=cfg.timeout, sock_read=cfg.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        feed = Feed(session, cfg.api_base, cfg.api_params(), HostGate(cfg.api_rps),
                    RetryPolicy(cfg.retries, cfg.backoff_base, cfg.backoff_max), random.Random(),
                    cfg.api_key, config_mod.USER_AGENT, cfg.max_empty_pages)
        try:
            async for batch in plan(feed, selector, start):
                for job in batch.jobs:
                    pixels = _pixels(job)
                    if pixels is None:
                        report.unknown_size += 1
                    else:
                        report.estimated_bytes += round(pixels * report.estimate.bytes_per_pixel)
                report.to_fetch += len(batch.jobs)
                if batch.stop is not None:
                    report.reason, report.message = batch.stop
                    break
            else:
                report.reason, report.message = "feed-ended", f"the feed ended (no next cursor) after {feed.counters.pages} page(s)"
        except FeedStopped as e:
            report.reason, report.message = e.reason, str(e)
        except RequestFailed as e:
            report.reason, report.message = "api-error", f"API error outlived the retries: {e} (last request {feed.counters.last_url})"
    report.already_done = report.stats.skipped_done
    report.matched = report.to_fetch + report.already_done
    report.api_calls = feed.counters.requests
    report.pages = feed.counters.pages
    return report


def format_report(report: DryRunReport, resumed: bool = False) -> list[str]:
    assert report.stats is not None and report.estimate is not None
    filtered = ", ".join(f"{k}: {v}" for k, v in report.stats.filtered.most_common()) or "none"
    lines = [
        f"dry run: {report.pages} page(s), {report.api_calls} API call(s); nothing was downloaded or written",
        f"matched:      {report.matched} image(s)",
        f"already done: {report.already_done}",
        f"to fetch:     {report.to_fetch}",
        f"estimated:    {report.estimated_bytes / 1e6:.1f} MB ({report.estimate.how}"
        + (f"; {report.unknown_size} of unknown size not counted" if report.unknown_size else "") + ")",
        f"filtered out: {filtered}; duplicates across pages: {report.stats.duplicates}; invalid items: {report.stats.invalid}",
        f"stopped: {report.message}",
    ]
    return lines
