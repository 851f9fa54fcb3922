"""A record of every request the simulator answered, for tests to assert politeness and faults.

Appending is all the hot path does; counting and windowing happen only when a test asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(slots=True)
class LogEntry:
    """One request; `status` is filled in when the answer is known (0 = connection reset)."""

    t: float  # time.monotonic() at arrival
    kind: str  # "api" | "cdn" | "other"
    path: str
    query: dict[str, str]
    status: int = 0
    fault: str | None = None
    auth: bool = False  # an Authorization header or a token= parameter arrived
    user_agent: str = ""
    accept: str = ""  # the Accept header
    host: str = ""  # the Host header: shows a request that reached us under another name (localhost)
    bytes_sent: int = 0  # CDN body bytes handed to the socket, so a test can see an early abort


# Where the middleware leaves a request's entry for its handler to fill in (typed key on aiohttp >= 3.12).
ENTRY_KEY: Any = web.RequestKey("log_entry", LogEntry) if hasattr(web, "RequestKey") else "log_entry"


class RequestLog:
    """Entries in arrival order. Safe to read from another thread while the server appends."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: list[LogEntry] = []

    def append(self, entry: LogEntry) -> None:
        self._entries.append(entry)

    def entries(self, kind: str | None = None) -> list[LogEntry]:
        snapshot = list(self._entries)
        return snapshot if kind is None else [e for e in snapshot if e.kind == kind]

    def count(self, kind: str | None = None, status: int | None = None) -> int:
        return sum(
            1 for e in list(self._entries) if (kind is None or e.kind == kind) and (status is None or e.status == status)
        )

    def max_per_window(self, kind: str | None, window: float = 1.0) -> int:
        """Most requests of `kind` (None = any) that arrived within any `window` seconds."""
        return most_within([e.t for e in self.entries(kind)], window)

    def clear(self) -> None:
        self._entries = []

    def __len__(self) -> int:
        return len(self._entries)


def most_within(times: list[float], window: float) -> int:
    """The most events (times in seconds) that fall within any `window` seconds: what a rate limit bounds."""
    times = sorted(times)
    best = start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
