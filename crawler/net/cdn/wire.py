"""One CDN connection's socket: what it received, queued as delivered, and a reader that waits for more.

The protocol appends each received `bytes` to a deque; `read(n)` pops it whole, splitting only where a
read asks for less, so a body is never copied on its way to the store. Reading the socket pauses while
`high` bytes wait unread, and resumes below a quarter of that: a reader that paces itself (`--max-rate`)
paces the server too. An ended connection (EOF, reset) reads as b"" / None, with `error` saying why.
"""

from __future__ import annotations

import asyncio
from collections import deque

from crawler.net.cdn.errors import BadResponse


class Connection(asyncio.Protocol):
    """One socket: what it received, queued as delivered, and a waiter woken when more comes or it ends."""

    __slots__ = ("loop", "key", "transport", "chunks", "size", "eof", "error", "waiter", "paused", "high", "low",
                 "answered")

    def __init__(self, loop: asyncio.AbstractEventLoop, key: tuple[str, str, int], high: int) -> None:
        self.loop = loop
        self.key = key
        self.transport: asyncio.Transport  # set by connection_made, before any other call
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.eof = False
        self.error: BaseException | None  # why it ended (None: a clean close), set with eof by connection_lost
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False
        self.high = high
        self.low = high // 4
        self.answered: bool  # a byte arrived since the last request was sent (reset by the client on sending)

    # --- the protocol side (called by the loop) ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        self.answered = True
        if self.size > self.high and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter  # done already when woken twice before the reader ran, or cancelled
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- the reader side (called by the request's task) ---

    async def _more(self) -> bool:
        """Wait for bytes; False when the connection has ended with none left."""
        while not self.chunks:
            if self.eof:
                return False
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return True

    def _taken(self, amount: int) -> None:
        self.size -= amount
        if self.paused and self.size <= self.low:
            self.paused = False
            self.transport.resume_reading()

    async def read(self, limit: int) -> bytes:
        """Up to `limit` bytes as received (b"" once the connection ended and nothing is left)."""
        if not self.chunks and not await self._more():
            return b""
        chunk = self.chunks[0]
        if len(chunk) <= limit:
            self.chunks.popleft()
        else:
            self.chunks[0] = chunk[limit:]
            chunk = chunk[:limit]
        self._taken(len(chunk))
        return chunk

    async def read_until(self, separator: bytes, limit: int) -> bytes | None:
        """The bytes up to and including `separator`; None if the connection ends first (what came is
        dropped); BadResponse past `limit` bytes without it."""
        if not await self._more():
            return None
        first = self.chunks[0]
        end = first.find(separator)
        if 0 <= end <= limit:  # the usual case: the whole head (or line) in the first chunk
            end += len(separator)
            if end == len(first):
                self.chunks.popleft()
            else:
                self.chunks[0] = first[end:]
            self._taken(end)
            return first[:end]
        gathered = bytearray()
        while True:
            if not await self._more():
                return None
            chunk = self.chunks.popleft()
            self._taken(len(chunk))
            start = max(0, len(gathered) - len(separator) + 1)
            gathered += chunk
            end = gathered.find(separator, start)
            if 0 <= end <= limit:
                end += len(separator)
                if end < len(gathered):
                    rest = bytes(gathered[end:])
                    self.chunks.appendleft(rest)
                    self.size += len(rest)
                return bytes(gathered[:end])
            if len(gathered) > limit + len(separator):
                raise BadResponse(f"a head or line longer than {limit} bytes")

    def clear(self) -> None:
        """Drop every buffered byte (the rest of a body nobody reads)."""
        self.chunks.clear()
        self._taken(self.size)

    def close(self) -> None:
        self.transport.close()  # connection_lost follows, which ends any read
