"""A download that waits for the network longer than `--timeout` is cancelled, and called stalled.

    stalls = Stalls(timeout=30)
    with stalls.watch() as watch:      # in the task doing the download
        watch.waiting()                # before each wait for the network (headers, the next chunk)
        data = await read()
        watch.idle()                   # the data came: the clock stops (writing it out is not a stall)
    ...                                # a stall surfaces as `Stalled` from the `with` block

aiohttp's own `sock_read` timeout does the same by moving a loop timer on every socket read (about twice
per image, 2.4 us each on uvloop here: ~1 % of the crawl's CPU per image). Here an attempt only notes when
it starts and stops waiting, and one timer per `Stalls` sweeps every `timeout / 4` s while any attempt
waits, so a stall is noticed between `timeout` and `1.25 x timeout` after the last byte.

Between `waiting()` and `idle()` the task must await nothing but the network: the sweep cancels only a
task that is waiting, so the cancellation always lands at that wait, inside the `with` block.

The stalled task is cancelled the way `asyncio.timeout()` does it: the cancellation is ours only if the
task was not also cancelled by someone else meanwhile (`Task.uncancel()` counts them), so a crawl being
shut down is never mistaken for a stall and its cancellation is never swallowed.
"""

from __future__ import annotations

import asyncio


class Stalled(Exception):
    """The watched block waited for the network for `timeout` seconds without a byte."""


class Watch:
    """One download attempt, watched from `with` to its end (a plain class: ~1 us cheaper than a generator)."""

    __slots__ = ("_stalls", "_time", "_cancelling", "task", "since", "fired")

    def __init__(self, stalls: Stalls) -> None:
        self._stalls = stalls
        self._time = stalls.loop.time
        self.since: float | None = None  # loop time the current wait began; None while not waiting
        self.fired = False

    def __enter__(self) -> Watch:
        task = asyncio.current_task()
        assert task is not None, "a Watch runs inside a task"
        self.task = task
        self._cancelling = task.cancelling()
        self._stalls._watched.add(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self._stalls._watched.discard(self)
        # Ours alone (nobody else cancelled the task meanwhile): a stall, told as such.
        if kind is asyncio.CancelledError and self.fired and self.task.uncancel() <= self._cancelling:
            raise Stalled(f"no byte for {self._stalls.timeout:g}s") from None

    def waiting(self) -> None:
        self.since = self._time()
        if self._stalls._sweeper is None:
            self._stalls.arm()

    def idle(self) -> None:
        self.since = None


class Stalls:
    """One per downloader (a crawl's local pool, or a Ray actor's), on the running loop."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.loop = asyncio.get_running_loop()
        self._watched: set[Watch] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    def watch(self) -> Watch:
        return Watch(self)

    def arm(self) -> None:
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.timeout / 4, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self.loop.time()
        for watch in list(self._watched):
            if watch.since is not None and now - watch.since >= self.timeout and not watch.fired:
                watch.fired = True
                watch.task.cancel()
        if any(w.since is not None and not w.fired for w in self._watched):
            self.arm()
