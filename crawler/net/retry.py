"""What a failed request means, and how long to wait before the next try.

Every request (API page or image) raises one of three outcomes when it does not succeed: `Retryable`
(5xx, reset, truncated, stalled, 429), `Gone` (404/410: deleted, never retried) or `Fatal` (no point in
trying again this run). `attempts` runs a request under that policy; the caller knows nothing of backoff.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class RequestCounters:
    """What one host's requests met: answers by status (0: none), retries, 429 pauses."""

    statuses: Counter[int] = field(default_factory=Counter)
    requests: int = 0
    retries: int = 0
    throttled: int = 0

    def count_retry(self, error: Retryable, _wait: float) -> None:
        if error.reason == "http-429":
            self.throttled += 1
        else:
            self.retries += 1


class RequestFailed(Exception):
    """Base of the outcomes; `reason` is short and stable (it is counted by `status`)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Retryable(RequestFailed):
    def __init__(self, reason: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(reason, detail)
        self.retry_after = retry_after


class Gone(RequestFailed):
    pass


class Fatal(RequestFailed):
    pass


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date. None if absent/garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    # A server asking for more than an hour is misbehaving; cap it so a crawl cannot hang for days.
    return min(max(seconds, 0.0), 3600.0)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int
    base: float
    cap: float
    # 429s are the server asking us to slow down, not the item failing: they get their own, larger budget.
    throttle_budget: int = 50

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Capped exponential backoff with equal jitter: never zero, never above `cap`."""
        ceiling = min(self.cap, self.base * (2 ** min(attempt, 30)))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


async def attempts(
    request: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    rng: random.Random,
    pause_host: Callable[[float], None] | None = None,
    on_retry: Callable[[Retryable, float], None] | None = None,
) -> T:
    """Run `request` until it succeeds, raises Gone/Fatal, or the retry budget is spent.

    When spent, the last `Retryable` is raised with the number of tries in its detail. A 429 pauses
    the whole host through `pause_host` (every worker waits in the gate, not only this one); any other
    failure sleeps here, at least as long as a Retry-After the server sent.
    """
    failures = 0
    throttles = 0
    while True:
        try:
            return await request()
        except Retryable as e:
            if e.reason == "http-429" and throttles < policy.throttle_budget:
                throttles += 1
                wait = e.retry_after if e.retry_after is not None else policy.delay(throttles, rng)
                if on_retry is not None:
                    on_retry(e, wait)
                if pause_host is not None:
                    pause_host(wait)
                else:
                    await asyncio.sleep(wait)
                continue
            failures += 1
            if failures > policy.retries:
                tries = f"after {failures} {'try' if failures == 1 else 'tries'}"
                # "http-500: after 2 tries", "truncated: 10 of 20 bytes (after 1 try)"
                raise Retryable(e.reason, f"{e.detail} ({tries})" if e.detail else tries, e.retry_after) from e
            wait = policy.delay(failures - 1, rng)
            if e.retry_after is not None:
                wait = max(wait, e.retry_after)
            if on_retry is not None:
                on_retry(e, wait)
            await asyncio.sleep(wait)
