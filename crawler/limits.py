"""The gate every request to one host passes: a request-rate limit plus a pool-wide pause.

    gate = HostGate(rate=20)       # at most ~20 requests a second
    async with gate: ...           # waits for a pause to end and for rate capacity
    gate.pause(30)                 # a 429 said Retry-After: 30 -> every caller waits

The sharp edge of a leaky bucket (aiolimiter's): it admits `burst` requests at once on top of its
rate, so a plain `AsyncLimiter(rate, 1)` can start about 2x `rate` in one second. Here the bucket
leaks at `rate / 1.02` and holds `burst` = 1.5 % of the rate (at least 1): `burst + rate/1.02` stays
within `rate` in any one-second window, while the small bucket absorbs timer jitter so at least
~97 % of the rate is reached.
"""

from __future__ import annotations

import asyncio
import time

from aiolimiter import AsyncLimiter


class HostGate:
    __slots__ = ("rate", "_limiter", "_resume_at", "pauses")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        burst = max(1.0, float(int(rate * 0.015)))
        self._limiter = AsyncLimiter(burst, burst * 1.02 / rate)
        self._resume_at = 0.0
        self.pauses = 0

    def pause(self, seconds: float) -> None:
        """Hold every caller until `seconds` from now (a later pause extends, an earlier one never shortens)."""
        resume_at = time.monotonic() + max(0.0, seconds)
        if resume_at > self._resume_at:
            self._resume_at = resume_at
            self.pauses += 1

    @property
    def paused_for(self) -> float:
        return max(0.0, self._resume_at - time.monotonic())

    async def acquire(self) -> None:
        while True:
            wait = self._resume_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            await self._limiter.acquire()
            # A pause may have begun while we waited for capacity; honour it before sending.
            if self._resume_at <= time.monotonic():
                return

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        return None
