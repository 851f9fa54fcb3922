"""The producer: earlier failures due for a retry, then every cursor chain's pages, turned into jobs on the queue.

A crawl pages one chain (its whole query) or, with a plan, one chain per partition in parallel, all
into the same bounded queue (back-pressure: paging waits while the workers are busy); with `--deep`,
the chains of every part of the query's proof (`proof.py`), of which only those the proof needs page --
with a plan, one proof per partition, side by side.
Each chain ends with a stop reason; `combine()` makes the crawl's from them. A chain that ends without a
next cursor after about `--depth-cap` items did not see its whole query: it ends `depth-capped`, not
complete. Each checkpoint carries its chain's progress (items and pages listed over every run, the
createdAt edge reached), so a rerun knows the depth and the proof where they stood. The feed's end is
one mark on the queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crawler.config.settings import ConfigError, CrawlConfig
from crawler.feed import deep
from crawler.feed.deep import NEWEST, OLDEST, Progress, Progressed
from crawler.feed.pages import Feed, FeedCounters, FeedStopped, Page, Position
from crawler.feed.partitions import Partition, apply_partition
from crawler.feed.selection import Selector, plan
from crawler.net.errors import last_request
from crawler.net.retry import Fatal, RequestFailed
from crawler.normalise import created_at
from crawler.run.executor import Port
from crawler.run.proof import Proof, Watch
from crawler.run.settle import Settler
from crawler.state import records
from crawler.stats import CrawlStats
from crawler.stops import COMPLETE, Stop
from crawler.store.errors import DiskFull


@dataclass(slots=True)
class Chain:
    """One cursor chain: the whole query, or one partition of a plan, with its own checkpoints."""

    cfg: CrawlConfig  # the crawl's settings with the partition's applied
    query: str  # its identity: checkpoints are recorded and resumed per chain
    name: str
    start: Position | None = None
    pages_before: int = 0  # pages a resumed chain had settled in earlier runs: its checkpoints count on
    feed: Feed | None = None
    root: CrawlConfig | None = None  # --deep: the settings of the query (or plan partition) this chain proves
    label: str = ""  # --deep with a plan: the partition whose proof this chain belongs to


def make_chains(cfg: CrawlConfig, query: str, partitions: list[Partition] | None) -> list[Chain]:
    """One chain, a plan's, or with --deep two per part of the proof (Newest 2k, Oldest 2k+1) of the query or
    of each plan partition, one block of chains after the other."""
    if cfg.deep:
        if cfg.source != "images":
            raise ConfigError("--deep proves the /images feed complete: it does not take --source models")
        if cfg.sort not in (None, NEWEST, OLDEST):
            raise ConfigError(f"--deep lists the feed Newest and Oldest itself (two orders whose chains meet prove "
                              f"a part whole; --sort {cfg.sort} cannot): drop --sort")
        roots = [(p.name, apply_partition(cfg, p)) for p in partitions] if partitions else [("", cfg)]
        return [Chain(c, c.query_identity(), f"{label} {part.name} {sort}".lstrip(), root=root, label=label)
                for label, root in roots for part in deep.tree(root) for sort in (NEWEST, OLDEST)
                for c in [apply_partition(root, Partition(part.name, part.settings(sort)))]]
    if not partitions:
        return [Chain(cfg, query, "")]
    chains = []
    for partition in partitions:
        chain_cfg = apply_partition(cfg, partition)
        chains.append(Chain(chain_cfg, chain_cfg.query_identity(), partition.name))
    return chains


class Producer:
    def __init__(self, chains: list[Chain], selectors: list[Selector], port: Port, settler: Settler,
                 stats: CrawlStats, counters: FeedCounters,
                 retry_due: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self.chains = chains
        self.selectors = selectors
        self.port = port
        self.settler = settler
        self.stats = stats
        self.counters = counters  # every chain's pages together
        self.retry_due = retry_due
        self.cfg = chains[0].cfg
        # Each chain's progress where it resumes (its checkpoint's). Each page's next position carries the
        # progress as of that page into its checkpoint, which trails the listing until the page settles.
        self.progress = [self._resumed(chain) for chain in chains]
        self._own: list[set[Any]] = [set() for _ in chains]  # the keys the page being listed queued itself
        self._pending: list[list[tuple[datetime, Any]]] = [[] for _ in chains]  # see `_listed`
        self._snapshot: list[dict[str, Any]] = [{} for _ in chains]

    def _resumed(self, chain: Chain) -> Progress:
        sort = OLDEST if chain.cfg.sort == OLDEST else NEWEST
        record = self.settler.state.checkpoint_of(chain.query)
        # A plain chain starting from the top starts counting afresh; a deep chain that ended stays ended
        # (its end is recorded as a position with no cursor) until the proof it belongs to is finished
        # (`finish.conclude` then resets every chain).
        if chain.start is None or (chain.start == Position() and not self.cfg.deep):
            return Progress(sort)
        if self.cfg.deep and not (record and isinstance(record.get("listed"), int)):
            chain.start = None  # a checkpoint without progress (another kind of crawl): its depth is unknown
        return Progress.from_record(sort, record)

    def _following(self, n: int, following: Position | object | None) -> Position | object | None:
        """Where the next run resumes after this page, with the chain's progress for its checkpoint."""
        if isinstance(following, Position):
            return Progressed(following.cursor, following.next_query, tuple(self._snapshot[n].items()))
        if following is None and self.cfg.deep:  # the end of a deep chain: not an end of the whole query
            return Progressed(None, None, tuple(self._snapshot[n].items()))
        return following  # the end of a plain chain (the next run starts afresh), or PARTIAL

    def _listed(self, n: int, page: Page) -> None:
        """The progress page `page`'s checkpoint will record, with an edge that never passes an item not settled.

        An item another chain queued first is skipped here as a duplicate, so this chain's checkpoint can
        pass it while its download is still in flight; after a kill, a proof trusting that edge would call
        the part whole and the item would never be listed again. So the recorded edge stops short of every
        such item still unsettled, and an end with one pending is not recorded as an end (`settled`)."""
        state, queued, own = self.settler.state, self.selectors[n].queued, self._own[n]
        pending = self._pending[n]
        for item in page.items:
            key = item.get("id") if isinstance(item, dict) else None
            when = created_at(item) if isinstance(key, int) and key in queued and key not in own else None
            if when is not None:
                pending.append((when, key))
        pending[:] = [(t, k) for t, k in pending if not (k in state.done or k in state.gone or k in state.failed)]
        self._snapshot[n] = self.progress[n].recorded([t for t, _k in pending])

    async def run(self, failures: Iterable[dict[str, Any]]) -> None:
        """Queue the failures due, then page every chain; then the crawl's reason and the end mark."""
        first, queue = self.selectors[0], self.port.queue
        for record in list(failures):
            if self.retry_due is not None and not self.retry_due(record):
                continue
            source = record.get("source") if isinstance(record.get("source"), str) else None
            job = first.job(record.get("item"), None, source)
            if job is not None and first.claim(job):
                self.stats.retried_failures += 1
                await queue.put(job)
        if self.cfg.deep:
            end = await self._prove()
        elif len(self.chains) == 1:
            end = self.combine([await self._tracked(0)])
        else:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._tracked(n)) for n in range(len(self.chains))]
            end = self.combine([task.result() for task in tasks])
        if self.port.stop.stopping():
            return  # a stop (signal, disk) was requested and gave its own reason
        self.port.stop.finish(*end)
        await queue.put(None)

    async def _tracked(self, n: int) -> tuple[Stop, str]:
        """A chain of a plain crawl or plan: paged to its end; an end at about --depth-cap is no end."""
        progress = self.progress[n]

        def watch(page: Page) -> bool:
            progress.page(page.items, page.next is None)
            self._listed(n, page)
            return False

        ended = await self._chain(n, watch)
        assert ended is not None
        if ended[0] == Stop.FEED_ENDED and progress.capped(self.cfg.depth_cap, self.cfg.limit):
            self._record_proof([self.chains[n]], [])
            return Stop.DEPTH_CAPPED, (f"depth-capped: the feed ended (no next cursor) after {progress.listed} item(s) in "
                                       f"{progress.pages} page(s), about --depth-cap {self.cfg.depth_cap}, where the "
                                       "API stops paging: it may match more; rerun with --deep to mirror all of it")
        return ended

    async def _prove(self) -> tuple[Stop, str]:
        """One proof per block of chains (the query's, or each plan partition's), side by side; their outcomes
        add up, and the first that halted gives the crawl's reason."""
        proofs, offset = [], 0
        while offset < len(self.chains):
            first = self.chains[offset]
            size = sum(1 for c in self.chains[offset:] if c.label == first.label and c.root is first.root)
            proofs.append(Proof(deep.tree(first.root or first.cfg), [c.cfg for c in self.chains[offset:offset + size]],
                                self.progress[offset:offset + size], self._chain, self._listed,
                                first_page=self._first_page, offset=offset, label=first.label))
            offset += size
        if self.cfg.max_images is not None:  # in turn: see proof.py
            for proof in proofs:
                await proof.run()
        else:
            async with asyncio.TaskGroup() as group:
                for proof in proofs:
                    group.create_task(proof.run())
        halted = [p.halt for p in proofs if p.halt is not None]
        if halted:
            return halted[0]
        outcome = deep.Outcome()
        for proof in proofs:
            outcome.gaps += proof.outcome.gaps
            outcome.proven += proof.outcome.proven
            outcome.chains += proof.outcome.chains
            outcome.split += proof.outcome.split
        self._record_proof([], [g.to_record() for g in outcome.gaps], outcome)
        cost = (f"{outcome.chains} chain(s), {outcome.split} split(s), {self.counters.pages} page(s) this run; "
                f"{len(outcome.proven)} part(s) proven whole")
        if outcome.gaps:
            named = "; ".join(g.describe() for g in outcome.gaps[:3]) + ("; ..." if len(outcome.gaps) > 3 else "")
            return Stop.GAPS_REMAIN, (f"gaps-remain: --deep could not prove {len(outcome.gaps)} part(s) complete "
                                      f"({cost}): {named}; `status --json` lists them under gaps")
        return Stop.FEED_ENDED, f"--deep proved the listing complete: {cost}"

    async def _first_page(self, n: int) -> list[Any] | None:
        """Chain n's first page asked afresh, queuing nothing: does a window still start where it began?"""
        feed = self.chains[n].feed
        assert feed is not None
        try:
            async for page in feed.pages(None):
                return page.items
        except (FeedStopped, Fatal, RequestFailed):
            pass
        return None

    def _record_proof(self, capped: list[Chain], gaps: list[dict[str, Any]], outcome: deep.Outcome | None = None) -> None:
        """The proof's findings, for `status` (the run's end record follows it)."""
        found: dict[str, Any] = {}
        if outcome is not None:
            found = {"chains": outcome.chains, "splits": outcome.split, "proven": outcome.proven,
                     "pages": self.counters.pages}
        capped_at = [{"partition": c.name, "query": c.query, **self.progress[self.chains.index(c)].to_record()}
                     for c in capped]
        self.settler.writer.append(records.proof(self.cfg.deep, self.cfg.depth_cap, capped_at, gaps, **found))

    def combine(self, ends: list[tuple[Stop, str]]) -> tuple[Stop, str]:
        """The crawl's reason from its chains': the first that did not complete, else they all did."""
        if len(ends) == 1:
            return ends[0]
        named = [(chain.name, reason, message) for chain, (reason, message) in zip(self.chains, ends)]
        for name, reason, message in named:
            if reason not in COMPLETE:
                return reason, f"partition {name}: {message}"
        reasons = [reason for _n, reason, _m in named]
        counts = ", ".join(f"{r}: {reasons.count(r)}" for r in dict.fromkeys(reasons))
        reason = Stop.FEED_ENDED if set(reasons) == {Stop.FEED_ENDED} else next(r for r in reasons if r != Stop.FEED_ENDED)
        return reason, f"all {len(ends)} partitions ended ({counts}) after {self.counters.pages} page(s)"

    async def _chain(self, n: int, watch: Watch) -> tuple[Stop, str] | None:
        """Page one chain into the queue; returns why it stopped, or None when `watch` stopped it."""
        chain, selector, ledger = self.chains[n], self.selectors[n], self.settler.ledgers[n]
        feed = chain.feed
        assert feed is not None
        try:
            async for batch in plan(feed, selector, chain.start):
                self.settler.refs(selector.new_refs)
                self._own[n] = {job.key for job in batch.jobs}
                enough = watch(batch.page)  # before the page opens: its checkpoint needs the progress
                # Opened before its jobs are queued, so a fast worker can never settle an unknown page.
                ledger.open_page(batch.page.number, len(batch.jobs), self._following(n, batch.following))
                for job in batch.jobs:
                    await self.port.queue.put(job)
                if batch.stop is not None:
                    return batch.stop
                if enough and batch.page.next is not None:
                    return None
            return Stop.FEED_ENDED, f"the feed ended (no next cursor) after {feed.counters.pages} page(s)"
        except FeedStopped as e:
            return e.reason, str(e)
        except Fatal as e:
            return Stop.API_REFUSED, f"{e.detail or e.reason}{last_request(e, feed.counters.last_url)}"
        except RequestFailed as e:
            return Stop.API_ERROR, f"API error outlived the retries: {e}{last_request(e, feed.counters.last_url)}"
        except DiskFull as e:
            self.port.stop.request(Stop.DISK_FULL, f"disk full: {e.strerror}")
            return Stop.DISK_FULL, f"disk full: {e.strerror}"
