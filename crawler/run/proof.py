"""The `--deep` proof over live chains: each part's Newest and Oldest chains page in parallel until they meet.

A part whose chains met, or one of whose chains ended short of `--depth-cap`, is whole. A part whose
chains both ended capped without meeting is split (`feed/deep.py`) and its children are proven the same
way, up to `PARTS_AT_ONCE` parts at a time (the chains share the crawl's API rate). A part no exhaustive
split divides is narrowed (`feed/coverage.py`): its period windows' Oldest chains page, shortest first,
each until it joins what is covered above it; a window whose first page, asked again, no longer starts
where it began is not trusted. If holes remain, each `--deep-base-models` part is proven alone, and the
holes are gaps that name the base models proven (only images of other or no base model may be missing).
Any other end of a chain (an API error, --max-images, a signal) halts the proof -- except a base model
the API refuses (HTTP 400: a name it does not know), which is only left unproven. Every chain stops at its
next page and the halting reason is the crawl's; a rerun continues from the checkpoints.
Under --max-images every chain pages in turn, never two at once: a rerun then lists the images it counts
in the same order as the run that mirrored them, so it stops at the same N instead of taking new ones
on one chain before another chain has shown it the ones already mirrored.
The proof does not know what paging a chain means (`Runner`): the crawl queues jobs, a dry run counts them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from crawler.config.settings import CrawlConfig
from crawler.feed import coverage
from crawler.feed.deep import OLDEST, Gap, Outcome, Part, Progress, bases, children, gap, proven, windows
from crawler.feed.pages import Page
from crawler.stops import Stop

# A chain's pages, with `watch(page)` called on each (True: stop after it); None when the watch stopped
# it, else why the chain ended (FEED_ENDED: no next cursor).
Watch = Callable[[Page], bool]
Runner = Callable[[int, Watch], Awaitable[tuple[Stop, str] | None]]
# A chain's first page asked afresh (its items), None if it could not be had: to check a window held still.
FirstPage = Callable[[int], Awaitable[list[Any] | None]]
PARTS_AT_ONCE = 4  # parts proven in parallel: up to 8 chains paging at once


class Proof:
    """Chains are numbered by part: part k lists Newest as chain 2k and Oldest as chain 2k+1 (plus `offset`,
    where several proofs, one per plan partition, share the crawl's chains; `label` prefixes their gaps)."""

    def __init__(self, parts: list[Part], configs: list[CrawlConfig], progress: list[Progress], runner: Runner,
                 on_page: Callable[[int, Page], None] | None = None, *, first_page: FirstPage | None = None,
                 offset: int = 0, label: str = "") -> None:
        self.parts = parts
        self.configs = configs  # per chain (of this proof)
        self.progress = progress  # per chain, loaded from checkpoints (a rerun continues)
        self.runner = runner
        self.on_page = on_page
        self.first_page = first_page  # None (a dry run): windows are trusted unchecked
        self.offset = offset
        self.label = label
        self.cap = configs[0].depth_cap
        self.limit = configs[0].limit
        self.outcome = Outcome()
        self.halt: tuple[Stop, str] | None = None  # the first end of a chain that is not part of the proof
        self.in_turn = configs[0].max_images is not None
        self._gate = asyncio.Semaphore(1 if self.in_turn else PARTS_AT_ONCE)

    async def run(self) -> Outcome:
        await self._part(0)
        return self.outcome

    def whole(self, k: int) -> bool:
        return proven(self.progress[2 * k], self.progress[2 * k + 1], self.cap, self.limit)

    async def _part(self, k: int, narrow: bool = True) -> None:
        if self._halted():
            return
        if not self.whole(k):
            async with self._gate:
                await self._page([2 * k, 2 * k + 1], lambda: self.whole(k))
        if self._halted():
            return
        part = self.parts[k]
        if self.whole(k):
            self.outcome.proven.append(self._name(part))
            return
        if not narrow:
            return
        kids = children(part, self.configs[0])
        if not kids:
            await self._narrow(k)
            return
        self.outcome.split += 1
        await self._all([self._part(self.parts.index(kid)) for kid in kids])

    async def _narrow(self, k: int) -> None:
        """Windows first (a meeting with them proves), then base models (they only narrow what is missing)."""
        part, cfg = self.parts[k], self.configs[0]
        newest, oldest = self.progress[2 * k], self.progress[2 * k + 1]
        shown = [self.parts.index(w) for w in windows(part, cfg)]
        paged: list[int] = []
        for w in shown:  # shortest first: a longer window's chain stops where a shorter one began
            if self.halt is not None or not self._holes(k, paged):
                break
            window = self.progress[2 * w + 1]
            others = [self.progress[2 * v + 1] for v in paged]
            paged.append(w)
            if not window.ended:
                def enough(window: Progress = window, others: list[Progress] = others) -> bool:
                    return coverage.reached(window, newest, oldest, others) or not self._holes(k, paged)

                async with self._gate:
                    await self._page([2 * w + 1], enough)
        trusted = [w for w in paged if not await self._drifted(2 * w + 1, newest)]
        if self._halted():
            return
        holes = self._holes(k, trusted)
        if not holes:
            self.outcome.proven.append(self._name(part))
            return
        models = [self.parts.index(b) for b in bases(part, cfg)]
        if models:
            self.outcome.split += 1
            await self._all([self._part(b, narrow=False) for b in models])
        if self._halted():
            return
        named = tuple(self.parts[b].base_model or "" for b in models if self.whole(b))
        base = gap(part, self.configs[2 * k], newest, oldest)
        for hole in holes:
            self.outcome.gaps.append(Gap(self._name(part), base.filters, _iso(hole.after), _iso(hole.before),
                                         hole.listed_newest, hole.listed_oldest, named))

    def _halted(self) -> bool:
        return self.halt is not None  # a method: other tasks set it while this one awaits

    def _holes(self, k: int, windows_paged: list[int]) -> list[coverage.Hole]:
        return coverage.holes(self.progress[2 * k], self.progress[2 * k + 1],
                              [self.progress[2 * w + 1] for w in windows_paged], self.cap, self.limit)

    async def _drifted(self, c: int, newest: Progress) -> bool:
        window = self.progress[c]
        if self.first_page is None or window.start is None or self.halt is not None:
            return False
        if newest.edge is not None and window.start > newest.edge:
            return False  # it starts where Newest already covers: it adds nothing, so nothing to check
        return coverage.drifted(window, await self.first_page(self.offset + c))

    async def _page(self, chains: list[int], enough: Callable[[], bool]) -> None:
        live = [c for c in chains if not self.progress[c].ended]
        self.outcome.chains += len(live)
        await self._all([self._chain(c, enough) for c in live])

    async def _all(self, steps: list[Coroutine[Any, Any, None]]) -> None:
        """In parallel, or one after the other under --max-images (see the module's docstring)."""
        if self.in_turn:
            for step in steps:
                if self.halt is None:
                    await step
                else:
                    step.close()  # never started: the proof halted
            return
        async with asyncio.TaskGroup() as group:
            for step in steps:
                group.create_task(step)

    async def _chain(self, c: int, enough: Callable[[], bool]) -> None:
        progress = self.progress[c]

        def watch(page: Page) -> bool:
            progress.page(page.items, page.next is None)
            if self.on_page is not None:
                self.on_page(self.offset + c, page)
            return self.halt is not None or enough()

        ended = await self.runner(self.offset + c, watch)
        if ended is None or ended[0] == Stop.FEED_ENDED:
            return
        if ended[0] == Stop.SINCE_REACHED and progress.sort != OLDEST:
            progress.ended = progress.whole = True  # everything wanted was listed, however deep
            return
        if ended[0] == Stop.API_REFUSED and self.parts[c // 2].base_model is not None:
            return  # a base model the API does not know: that part stays unproven, the rest goes on
        if self.halt is None:
            self.halt = ended

    def _name(self, part: Part) -> str:
        return f"{self.label} {part.name}" if self.label else part.name


def _iso(when: Any) -> str | None:
    return when.isoformat() if when is not None else None
