"""The crawl's stop control: one flag every task watches, and the one reason the crawl gives for stopping.

    control.request(Stop.DISK_FULL, "disk full: ...")   # stop taking work; the first cause is kept
    control.finish(Stop.FEED_ENDED, "...")              # why, without stopping what is in flight
    control.stopping(); await control.stopped()

The first cause wins, except that a requested stop replaces a "complete" reason: the feed had ended
(or a limit was reached) but queued images were still being fetched, so the crawl did not complete.
"""

from __future__ import annotations

import asyncio

from crawler.stops import COMPLETE, Stop


class StopControl:
    __slots__ = ("_event", "_reason")

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._reason: tuple[Stop, str] | None = None

    def request(self, reason: Stop = Stop.INTERRUPTED,
                message: str = "interrupted by a signal; rerun the same command to resume") -> None:
        """Stop taking work; in-flight downloads finish (up to the grace period)."""
        if self._reason is not None and self._reason[0] in COMPLETE:
            self._reason = None
        self.finish(reason, message)
        self._event.set()

    def finish(self, reason: Stop, message: str) -> None:
        if self._reason is None:  # the first cause wins: it is why the crawl stopped
            self._reason = (reason, message)

    def stopping(self) -> bool:
        return self._event.is_set()

    async def stopped(self) -> None:
        await self._event.wait()

    @property
    def reason(self) -> tuple[Stop, str]:
        return self._reason or (Stop.INTERRUPTED, "stopped before the feed ended")
