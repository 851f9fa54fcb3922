"""Which items of a page become download jobs: valid, wanted by the filters, not done, not seen this run.

Shared by the crawl's producer and by `--dry-run`, so a dry run counts exactly what a crawl fetches.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from crawler.config.settings import CrawlConfig
from crawler.feed.checkpoints import PARTIAL
from crawler.feed.filters import ItemFilter
from crawler.feed.items import InvalidItem, Job, Sizes, make_job
from crawler.feed.pages import Feed, Page, Position
from crawler.keys import Key, KeySet
from crawler.logs import Logger
from crawler.normalise import created_at
from crawler.stats import CrawlStats
from crawler.stops import Stop
from crawler.urls import redact


class Quota:
    """Images of this query the mirror holds or will hold, counted across every chain of a plan.

    --max-images N means the mirror holds N images of this query: images queued this run, plus those
    already mirrored that this query lists (`held`, each counted once however often it is listed). The
    done-set is global to the mirror, so the count is rebuilt by listing; a crawl with --max-images
    therefore walks the feed from the top rather than from a checkpoint (see `Crawl._start`).
    """
    __slots__ = ("held", "taken")

    def __init__(self) -> None:
        self.taken = 0
        self.held = KeySet()  # already-mirrored keys counted in `taken`


class Selector:
    def __init__(self, cfg: CrawlConfig, done: KeySet | set[Key], gone: KeySet | set[Key], stats: CrawlStats,
                 on_invalid: Callable[[str], None], track_newest: bool = False,
                 refs: set[tuple[Key, str]] | None = None, by_uuid: dict[str, int] | None = None,
                 chain: int = 0, queued: KeySet | None = None, quota: Quota | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        """`chain`/`queued`/`quota`: one Selector per cursor chain of a plan, all sharing the run's
        queued keys and its --max-images count. `log`: for notices (default: stderr in the crawl's format)."""
        self.cfg = cfg
        self.log = log or Logger(sys.stderr, cfg.log_format).info
        self.sizes = Sizes(cfg.width, cfg.original, cfg.video_width, cfg.video_original)
        self.sizing = cfg.width is not None or cfg.original or cfg.video_width is not None or cfg.video_original
        self._told_unsized = False
        self.chain = chain
        self.filter = ItemFilter.from_config(cfg)
        # Shared with the crawl, which adds each outcome: no copy of a done-set of millions per run.
        self.done = done
        self.gone = gone
        self.queued = queued if queued is not None else KeySet()  # this run's keys, settled or not
        self.quota = quota if quota is not None else Quota()
        self.stats = stats
        self.on_invalid = on_invalid
        self.track_newest = track_newest
        self.newest: datetime | None = None  # the newest createdAt listed: follow's high-water mark
        # Model images only: which (image, model version) pairs are known, and uuid -> id, so an image
        # listed without an id (model detail answers) is still recognised as one seen with its id.
        self.refs = refs if refs is not None else set()
        self.by_uuid = by_uuid
        self.new_refs: list[Job] = []  # skipped images whose source is new: the crawl records the reference

    def job(self, item: Any, page: int | None, source: str | None = None) -> Job | None:
        try:
            job = make_job(item, self.cfg.width, self.cfg.original, page, source, self.chain, self.sizes)
        except InvalidItem as e:
            self.stats.invalid += 1
            self.on_invalid(str(e))
            return None
        if job.unsized is not None and self.sizing and not self._told_unsized:
            self._told_unsized = True  # once: a feed of b2 media would say it for every item
            self.log(f"some media URLs are fetched as listed, without the size asked ({job.unsized}), "
                     f"e.g. {redact(job.url)}")
        return job

    def select(self, items: list[Any], page: int, sources: list[str] | None = None) -> list[Job]:
        stats = self.stats
        active = self.filter.active
        jobs: list[Job] = []
        for n, item in enumerate(items):
            job = self.job(item, page, sources[n] if sources else None)
            if job is None:
                continue
            uuid = job.uuid
            if self.by_uuid is not None and uuid is not None:
                known = self.by_uuid.get(uuid)
                if job.id is None and known is not None:
                    job = replace(job, key=known, id=known)
                elif job.id is not None:
                    self.by_uuid[uuid] = job.id
            if self.track_newest:
                when = created_at(job.item)
                if when is not None and (self.newest is None or when > self.newest):
                    self.newest = when
            key = job.key
            if key in self.queued or key in self.done or key in self.gone:
                if key in self.queued:
                    stats.duplicates += 1
                else:
                    stats.skipped_done += 1
                    if key in self.done and self.cfg.max_images is not None and key not in self.quota.held:
                        self.quota.held.add(key)  # already mirrored: it counts toward --max-images
                        self.quota.taken += 1
                if job.source is not None and (key, job.source) not in self.refs:
                    self.refs.add((key, job.source))
                    self.new_refs.append(job)
                continue
            why = self.filter.reason(job.item) if active else None
            if why is not None:
                stats.filtered[why] += 1
                continue
            self.queued.add(key)
            if job.source is not None:
                self.refs.add((key, job.source))
            jobs.append(job)
        return jobs

    def claim(self, job: Job) -> bool:
        """For jobs from elsewhere (earlier failures): True if not yet settled or queued."""
        if job.key in self.queued or job.key in self.done or job.key in self.gone:
            return False
        self.queued.add(job.key)
        return True

    def stop_paging(self, items: list[Any]) -> bool:
        return self.cfg.sort == "Newest" and self.filter.past_since(items)


@dataclass(frozen=True, slots=True)
class Batch:
    page: Page
    jobs: list[Job]
    following: Position | object | None  # where the next run may resume after this page; PARTIAL: nowhere
    stop: tuple[Stop, str] | None  # (reason, message) when paging stops after this page


async def plan(feed: Feed, selector: Selector, start: Position | None) -> AsyncIterator[Batch]:
    """Pages turned into jobs, with the crawl's own limits (--max-images, --max-pages, --since) applied.

    Ends after a batch with `stop`, or when the feed ends (FeedStopped/RequestFailed propagate).
    """
    cfg = selector.cfg
    quota = selector.quota
    async for page in feed.pages(start):
        jobs = selector.select(page.items, page.number, page.sources)
        stop: tuple[Stop, str] | None = None
        following: Position | object | None = page.next
        limit = cfg.max_images
        # `taken` already holds this page's mirrored images (select counts them), so it can pass N.
        if limit is not None and len(jobs) >= (quota_left := max(0, limit - quota.taken)):
            jobs = jobs[:quota_left]
            following = PARTIAL
            mirrored = min(len(quota.held), limit)
            held = f" ({mirrored} of them mirrored before this run)" if mirrored else ""
            stop = (Stop.MAX_IMAGES, f"--max-images {limit} reached after {page.number} page(s){held}")
        elif selector.stop_paging(page.items):
            following = None  # the rest of the feed is unwanted: the next run starts from the top
            stop = (Stop.SINCE_REACHED, f"items older than --since {cfg.since} reached on page {page.number} "
                    "(newest first): the rest of the feed is older")
        elif cfg.max_pages is not None and page.number >= cfg.max_pages and page.next is not None:
            stop = (Stop.MAX_PAGES, f"--max-pages {cfg.max_pages} reached")
        quota.taken += len(jobs)
        yield Batch(page, jobs, following, stop)
        if stop is not None:
            return
