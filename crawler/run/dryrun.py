"""`crawl --dry-run`: walk the pages a crawl would walk and say what it would fetch, fetching no image.

Uses the crawl's own selection (filters, done-set, --max-images/--max-pages/--since), at the API rate
limit. It takes no lock and writes no image, no manifest record and no snapshot: the one thing it
writes is its tally (`dry_counts`: matched, already mirrored, to fetch), into `dry-run-counts.json`
in the mirror's state folder (created if need be), under the query's key, so that a later crawl of
the same query shows an ETA. Only a walk that reached the end of the listing (the feed ended, was
depth-capped, reached --since, or --deep's proof finished) is saved: an interrupted dry run (Ctrl-C),
an API error or a --max-images/--max-pages stop counted part of it and saves nothing (an earlier
count of the query stays). A folder that cannot be written is reported in the last lines, not fatal.
A feed that ends at about --depth-cap is reported depth-capped; with --deep the whole proof is walked
from the start (its chains share one done-set, so an image listed by several is counted once), and
the report says what it cost and whether gaps remain.
"""

from __future__ import annotations

import asyncio
import random
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from crawler.config.settings import CrawlConfig
from crawler.feed import deep
from crawler.feed.deep import NEWEST, OLDEST, Progress
from crawler.feed.items import Job
from crawler.feed.pages import Feed, FeedCounters, FeedStopped, Page, Position
from crawler.feed.selection import Batch, Selector, plan
from crawler.keys import KeySet
from crawler.net.errors import last_request
from crawler.net.retry import RequestFailed
from crawler.net.sessions import open_net
from crawler.run import dry_counts
from crawler.run.chains import make_chains
from crawler.run.proof import Proof, Watch
from crawler.state import records, resume
from crawler.state.fold import ResumeState
from crawler.state.manifest import MANIFEST_NAME, iter_records
from crawler.stats import CrawlStats
from crawler.stops import Stop

# Stops after which the walk has counted the whole listing a crawl of the query would walk.
WHOLE = frozenset({Stop.FEED_ENDED, Stop.DEPTH_CAPPED, Stop.SINCE_REACHED, Stop.GAPS_REMAIN})

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
    chains: int = 0  # --deep: chains the proof paged
    gaps: list[str] | None = None  # --deep: parts it could not prove (None: not a deep dry run)
    saved: str = ""  # what became of the tally (saved for the crawl's ETA, or why not)


def _assumed() -> Estimate:
    return Estimate(ASSUMED_BYTES_PER_PIXEL,
                    f"assumed {ASSUMED_BYTES_PER_PIXEL} bytes/pixel (nothing mirrored yet to measure)")


def measure_bytes_per_pixel(root: Path, sample: int = 5000) -> Estimate:
    """Bytes per pixel over the mirror's own done images (their recorded width and the item's aspect)."""
    total_bytes = total_pixels = counted = 0
    for record in iter_records(root / MANIFEST_NAME):
        if records.status_of(record) != records.DONE:
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
        return _assumed()
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
    report.estimate = measure_bytes_per_pixel(root) if state.done else _assumed()
    counters = FeedCounters()
    chains = make_chains(cfg, cfg.query_identity(), None)
    queued = KeySet()  # shared: an image listed by two chains is counted once
    selectors = [Selector(chain.cfg, state.done, state.gone, report.stats, lambda why: None, chain=n, queued=queued)
                 for n, chain in enumerate(chains)]
    # --max-images counts the query's mirrored images from the top of the feed, as the crawl does.
    saved = None if cfg.deep or cfg.max_images is not None else state.resume_position()
    start = Position.from_record(saved) if saved else None

    def count(batch: Batch) -> None:
        for job in batch.jobs:
            pixels = _pixels(job)
            if pixels is None:
                report.unknown_size += 1
            else:
                report.estimated_bytes += round(pixels * report.estimate.bytes_per_pixel)  # type: ignore[union-attr]
        report.to_fetch += len(batch.jobs)

    async def walk(n: int, watch: Watch) -> tuple[Stop, str] | None:
        try:
            async for batch in plan(feeds[n], selectors[n], start):
                count(batch)
                enough = watch(batch.page)
                if batch.stop is not None:
                    return batch.stop
                if enough and batch.page.next is not None:
                    return None
        except FeedStopped as e:
            return e.reason, str(e)
        except RequestFailed as e:
            return Stop.API_ERROR, f"API error outlived the retries: {e}{last_request(e, counters.last_url)}"
        return Stop.FEED_ENDED, f"the feed ended (no next cursor) after {counters.pages} page(s)"

    try:
        async with open_net(cfg) as net:
            assert net.api is not None and net.api_gate is not None
            feeds = [Feed.from_config(chain.cfg, net.api, net.api_gate, net.policy, random.Random(), counters)
                     for chain in chains]
            progress = [Progress(OLDEST if chain.cfg.sort == OLDEST else NEWEST) for chain in chains]
            if cfg.deep:
                proof = Proof(deep.tree(cfg), [chain.cfg for chain in chains], progress, walk)
                outcome = await proof.run()
                report.chains, report.gaps = outcome.chains, [g.describe() for g in outcome.gaps]
                if proof.halt is not None:
                    report.reason, report.message = proof.halt
                elif outcome.gaps:
                    report.reason = Stop.GAPS_REMAIN
                    report.message = f"gaps-remain: {len(outcome.gaps)} part(s) could not be proven"
                else:
                    report.reason, report.message = Stop.FEED_ENDED, "--deep would prove the listing complete"
            else:
                def watch(page: Page) -> bool:
                    progress[0].page(page.items, page.next is None)
                    return False

                report.reason, report.message = await walk(0, watch) or (Stop.FEED_ENDED, "")
                if report.reason == Stop.FEED_ENDED and progress[0].capped(cfg.depth_cap, cfg.limit):
                    report.reason = Stop.DEPTH_CAPPED
                    report.message = (f"depth-capped: the feed ended (no next cursor) after {progress[0].listed} item(s), about "
                                      f"--depth-cap {cfg.depth_cap}: it may match more; --deep would mirror all of it")
    except asyncio.CancelledError:  # Ctrl-C: the tally of the pages walked so far is still worth printing
        report.reason, report.message = Stop.INTERRUPTED, "interrupted: the counts cover the pages walked so far"
    report.already_done = report.stats.skipped_done  # type: ignore[union-attr]
    report.matched = report.to_fetch + report.already_done
    report.api_calls = counters.requests
    report.pages = counters.pages
    report.saved = _save(cfg, report, len(state.done), start is None)
    return report


def _save(cfg: CrawlConfig, report: DryRunReport, mirrored: int, from_top: bool) -> str:
    """Keep the tally for a later crawl's ETA when it covers the whole listing; say what happened."""
    if report.reason not in WHOLE:
        return f"count not saved: the walk stopped early ({report.reason}), so it covers part of the listing"
    count = dry_counts.DryCount(report.matched, report.already_done, report.to_fetch, mirrored, from_top,
                                datetime.now(UTC).isoformat(timespec="seconds"))
    try:
        dry_counts.save(cfg.state, cfg.query_identity(), count)
    except OSError as e:
        return f"count not saved: {dry_counts.path_of(cfg.state)}: {e.strerror or e}"
    return f"count saved in {dry_counts.path_of(cfg.state)}: a crawl of this query shows an ETA"


def format_report(report: DryRunReport, resumed: bool = False) -> list[str]:
    assert report.stats is not None and report.estimate is not None
    filtered = ", ".join(f"{k}: {v}" for k, v in report.stats.filtered.most_common()) or "none"
    lines = [
        f"dry run: {report.pages} page(s), {report.api_calls} API call(s); nothing was downloaded",
        f"matched:      {report.matched} image(s)",
        f"already mirrored: {report.already_done}",
        f"to fetch:     {report.to_fetch}",
        f"estimated:    {report.estimated_bytes / 1e6:.1f} MB ({report.estimate.how}"
        + (f"; {report.unknown_size} of unknown size not counted" if report.unknown_size else "") + ")",
        f"filtered out: {filtered}; duplicates across pages: {report.stats.duplicates}; invalid items: {report.stats.invalid}",
    ]
    if report.gaps is not None:
        lines.append(f"deep:         {report.chains} chain(s) paged, {report.pages} API page(s); "
                     + (f"gaps remain in {len(report.gaps)} part(s)" if report.gaps else "no gaps: proven complete"))
        lines.extend(f"  gap {text}" for text in report.gaps)
    if report.saved:
        lines.append(report.saved)
    lines.append(f"stopped: {report.message}")
    return lines
