"""The gates of the pool: a request-rate limit plus a pool-wide pause per host, and a bandwidth cap.

    gate = HostGate(rate=20)       # at most ~20 requests a second
    async with gate: ...           # waits for a pause to end and for rate capacity
    gate.pause(30)                 # a 429 said Retry-After: 30 -> every caller waits

The sharp edge of a leaky bucket (aiolimiter's): it admits `burst` requests at once on top of its
rate, so a plain `AsyncLimiter(rate, 1)` can start about 2x `rate` in one second. Here the bucket
leaks at `rate / 1.02` and holds `burst` = 1.5 % of the rate (at least 1), which absorbs timer
jitter so ~98 % of the rate is reached; a sliding window of the last `rate` start times then makes
"never more than `rate` in any one second" a hard guarantee, with a 2.5 % margin for clumping between
here and the server.

    cap = ByteGate(rate=2 * 2**20)  # --max-rate 2M: at most 2 MiB read in any one second
    await cap.acquire(len(chunk))   # before a chunk is used; a chunk is at most `cap.chunk` bytes

`ByteGate` is the same design counted in bytes: a bucket leaking at `rate / 1.02` (holding one chunk,
so a chunk is never more than the budget), then a sliding window of the bytes admitted in the last
1.025 s. Reads are paced, not requests: the server may still send one chunk ahead per connection into
the socket buffers before the reader pays for it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from aiolimiter import AsyncLimiter

_BYTE_WINDOW = 1.025  # as HostGate's: the margin keeps the server's count of any one second within the cap


class HostGate:
    __slots__ = ("rate", "_limiter", "_resume_at", "_sent", "_window")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        burst = max(1.0, float(int(rate * 0.015)))
        self._limiter = AsyncLimiter(burst, burst * 1.02 / rate)
        # The hard cap: at most floor(rate) starts in any 1.02 s (1.02/rate s below 1/s). The bucket
        # alone keeps it at the sender, but an event loop busy for a few ms sends late requests in a
        # clump; the margin keeps the server's count of any one second within the rate too.
        allowed = max(1, int(rate))
        self._window = 1.025 * allowed / rate if rate < 1 else 1.025
        self._sent: deque[float] = deque(maxlen=allowed)
        self._resume_at = 0.0

    def pause(self, seconds: float) -> None:
        """Hold every caller until `seconds` from now (a later pause extends, an earlier one never shortens)."""
        resume_at = time.monotonic() + max(0.0, seconds)
        if resume_at > self._resume_at:
            self._resume_at = resume_at

    async def acquire(self) -> None:
        while True:
            wait = self._resume_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            await self._limiter.acquire()
            sent = self._sent
            # A deadline, not an event: the window's oldest start ages out at a known time.
            while len(sent) == sent.maxlen and (late := sent[0] + self._window - time.monotonic()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(late)
            # A pause may have begun while we waited for capacity; honour it before sending.
            now = time.monotonic()
            if self._resume_at <= now:
                sent.append(now)
                return

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        return None


class ByteGate:
    """At most `rate` bytes admitted in any one second, across every caller (a whole download pool)."""

    __slots__ = ("chunk", "rate", "_limiter", "_spent", "_total")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        # Reads are sized so that several fit in a second: the pace stays smooth and no chunk waits long.
        self.chunk = max(1, min(256 * 1024, int(rate // 16)))
        burst = float(max(self.chunk, int(rate * 0.015)))
        self._limiter = AsyncLimiter(burst, burst * 1.02 / rate)
        self._spent: deque[tuple[float, int]] = deque()  # (when, bytes) admitted within the last window
        self._total = 0

    async def acquire(self, amount: int) -> None:
        """Wait until `amount` bytes fit the bucket and the last second's budget (taken a chunk at a time)."""
        while amount > 0:
            piece = min(amount, self.chunk)
            await self._take(piece)
            amount -= piece

    async def _take(self, amount: int) -> None:
        await self._limiter.acquire(amount)
        spent = self._spent
        while True:
            now = time.monotonic()
            while spent and spent[0][0] + _BYTE_WINDOW <= now:
                self._total -= spent.popleft()[1]
            if self._total + amount <= self.rate:
                spent.append((now, amount))
                self._total += amount
                return
            # A deadline, not an event: the window's oldest bytes age out at a known time.
            await asyncio.sleep(spent[0][0] + _BYTE_WINDOW - now)
