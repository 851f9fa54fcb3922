"""The `--deep` proof over live chains: each part's Newest and Oldest chains page in parallel until they meet.

A part whose chains met, or one of whose chains ended short of `--depth-cap`, is whole. A part whose
chains both ended capped without meeting is split (`feed/deep.py`) and its children are proven the same
way, up to `PARTS_AT_ONCE` parts at a time (the chains share the crawl's API rate). An indivisible part
left unproven is a gap. Any other end of a chain (an API error, --max-images, a signal) halts the proof:
every chain stops at its next page and that reason is the crawl's; a rerun continues from the checkpoints.
The proof does not know what paging a chain means (`Runner`): the crawl queues jobs, a dry run counts them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from crawler.config.settings import CrawlConfig
from crawler.feed.deep import OLDEST, Outcome, Part, Progress, children, gap, proven
from crawler.feed.pages import Page
from crawler.stops import Stop

# A chain's pages, with `watch(page)` called on each (True: stop after it); None when the watch stopped
# it, else why the chain ended (FEED_ENDED: no next cursor).
Watch = Callable[[Page], bool]
Runner = Callable[[int, Watch], Awaitable[tuple[Stop, str] | None]]
PARTS_AT_ONCE = 4  # parts proven in parallel: up to 8 chains paging at once


class Proof:
    """Chains are numbered by part: part k lists Newest as chain 2k and Oldest as chain 2k+1."""

    def __init__(self, parts: list[Part], configs: list[CrawlConfig], progress: list[Progress], runner: Runner,
                 on_page: Callable[[int, Page], None] | None = None) -> None:
        self.parts = parts
        self.configs = configs  # per chain
        self.progress = progress  # per chain, loaded from checkpoints (a rerun continues)
        self.runner = runner
        self.on_page = on_page
        self.cap = configs[0].depth_cap
        self.limit = configs[0].limit
        self.outcome = Outcome()
        self.halt: tuple[Stop, str] | None = None  # the first end of a chain that is not part of the proof
        self._gate = asyncio.Semaphore(PARTS_AT_ONCE)

    async def run(self) -> Outcome:
        await self._part(0)
        return self.outcome

    def whole(self, k: int) -> bool:
        return proven(self.progress[2 * k], self.progress[2 * k + 1], self.cap, self.limit)

    async def _part(self, k: int) -> None:
        if self.halt is not None:
            return
        if not self.whole(k):
            async with self._gate:
                live = [c for c in (2 * k, 2 * k + 1) if not self.progress[c].ended]
                self.outcome.chains += len(live)
                async with asyncio.TaskGroup() as group:
                    for c in live:
                        group.create_task(self._chain(c, k))
        if self.halt is not None:
            return
        part = self.parts[k]
        if self.whole(k):
            self.outcome.proven.append(part.name)
            return
        kids = children(part, self.configs[0])
        if not kids:
            self.outcome.gaps.append(gap(part, self.configs[2 * k], self.progress[2 * k], self.progress[2 * k + 1]))
            return
        self.outcome.split += 1
        async with asyncio.TaskGroup() as group:
            for kid in kids:
                group.create_task(self._part(self.parts.index(kid)))

    async def _chain(self, c: int, k: int) -> None:
        progress = self.progress[c]

        def watch(page: Page) -> bool:
            progress.page(page.items, page.next is None)
            if self.on_page is not None:
                self.on_page(c, page)
            return self.halt is not None or self.whole(k)

        ended = await self.runner(c, watch)
        if ended is None or ended[0] == Stop.FEED_ENDED:
            return
        if ended[0] == Stop.SINCE_REACHED and progress.sort != OLDEST:
            progress.ended = progress.whole = True  # everything wanted was listed, however deep
            return
        if self.halt is None:
            self.halt = ended
