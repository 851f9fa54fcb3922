"""An answer read off a `Connection`: its head parsed strictly, its body framed as RFC 9112 says.

A head is a status line of HTTP/1.1 or 1.0 and header lines (`name: value`, no folding); anything else
is `BadResponse`, as are two different Content-Lengths. Bodies are framed by Content-Length, chunked
(extensions and trailers read and dropped), or by the connection's end; a body that ends early is
`Truncated`, saying how much came and how the connection ended.
"""

from __future__ import annotations

from collections.abc import Mapping

from crawler.net.cdn.errors import BadResponse, Disconnected, Truncated
from crawler.net.cdn.wire import Connection

HEAD_LIMIT = 64 * 1024  # an answer's status line and headers, together
_LINE_LIMIT = 8 * 1024  # a chunk-size line or a trailer


class Body:
    """A response's body, read a chunk at a time: `read(n)` gives up to `n` bytes, b"" at its end."""

    __slots__ = ("_conn", "_left", "_chunked", "_chunk_left", "_crlf_due", "done", "received")

    def __init__(self, conn: Connection, length: int | None, chunked: bool) -> None:
        self._conn = conn
        self._left = length  # bytes still to come of a Content-Length body; None otherwise
        self._chunked = chunked
        self._chunk_left = 0  # bytes still to come of the current chunk
        self._crlf_due = False  # the CRLF after a chunk's data, read with the next size line
        self.done = length == 0  # read to the end of its framing (a body read to the close never is)
        self.received = 0

    async def read(self, size: int) -> bytes:
        if self.done:
            return b""
        left = self._left
        if left is not None:
            data = await self._conn.read(min(size, left))
            if not data:
                raise Truncated(f"received {self.received} of {left + self.received} bytes, then the connection "
                                f"{self._ended()}")
            self._left = left - len(data)
            self.done = self._left == 0
        elif self._chunked:
            data = await self._read_chunked(size)
        else:  # to the connection's end (never kept after): a clean close ends it, a reset truncates it
            data = await self._conn.read(size)
            if not data and self._conn.error is not None:
                raise Truncated(f"received {self.received} bytes, then the connection {self._ended()}")
        self.received += len(data)
        return data

    async def _read_chunked(self, size: int) -> bytes:
        conn = self._conn
        if not self._chunk_left:
            if self._crlf_due:
                end = await conn.read_until(b"\r\n", _LINE_LIMIT)
                if end is None:
                    raise self._broken("no CRLF after a chunk's data")
                if end != b"\r\n":
                    raise BadResponse("no CRLF after a chunk's data")
            line = await conn.read_until(b"\r\n", _LINE_LIMIT)
            if line is None:
                raise self._broken("no chunk size")
            digits = line[:-2].partition(b";")[0].strip()
            if not digits or digits.strip(b"0123456789abcdefABCDEF"):
                raise BadResponse(f"chunk size {digits[:20]!r} is not hexadecimal")
            self._chunk_left = int(digits, 16)
            if self._chunk_left == 0:
                while True:  # trailers, up to the empty line
                    trailer = await conn.read_until(b"\r\n", _LINE_LIMIT)
                    if trailer is None:
                        raise self._broken("no end of the trailers")
                    if trailer == b"\r\n":
                        break
                self.done = True
                return b""
        data = await conn.read(min(size, self._chunk_left))
        if not data:
            raise self._broken("a chunk cut short")
        self._chunk_left -= len(data)
        self._crlf_due = not self._chunk_left
        return data

    def _broken(self, what: str) -> Truncated:
        return Truncated(f"received {self.received} bytes of a chunked body, then {what}: the connection "
                         f"{self._ended()}")

    def _ended(self) -> str:
        error = self._conn.error
        if error is None:
            return "closed"
        return "was reset" if isinstance(error, ConnectionResetError) else f"failed ({error})"

    def settle(self) -> bool:
        """True when the body is read through, or its rest is exactly what lies in the buffer (then dropped:
        more there would be bytes nobody asked for, and the connection is not kept then anyway)."""
        if not self.done and self._left is not None and self._left == self._conn.size:
            self._conn.clear()
            self.done = True  # and read() returns b"" from now on
        return self.done


class Response:
    """An answer: `status`, `reason`, `headers` (lower-cased names; repeated ones joined by ", "),
    `content_length` (None for chunked or unframed bodies) and `content` (the `Body`)."""

    __slots__ = ("status", "reason", "headers", "content_length", "content", "keep_alive")

    def __init__(self, status: int, reason: str, headers: dict[str, str], content_length: int | None,
                 content: Body, keep_alive: bool) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content_length = content_length
        self.content = content
        self.keep_alive = keep_alive

def parse_head(head: bytes) -> tuple[str, int, str, dict[str, str]]:
    """(HTTP version, status, reason, headers) of an answer's head, ending in its empty line."""
    lines = head[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise BadResponse(f"status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or not name.isascii() or " " in name:
            raise BadResponse(f"header line {line[:80]!r}")
        name = name.lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return version, int(code), reason, headers


def framing(version: str, status: int, headers: Mapping[str, str]) -> tuple[int | None, bool, bool]:
    """(Content-Length, chunked, keep-alive) of an answer, as RFC 9112 section 6 reads its head."""
    connection = headers.get("connection")
    keep_alive = version == "HTTP/1.1" and (connection is None or "close" not in connection.lower())
    if status < 200 or status in (204, 304):
        return 0, False, keep_alive
    coding = headers.get("transfer-encoding")
    if coding is not None:
        # Any other transfer coding (gzip, ...) would need decoding to be the image's bytes: refused, never
        # stored as it came. With a Content-Length too the length is ignored, and the connection is not
        # trusted for another request (a smuggling tell).
        if coding.strip().lower() != "chunked":
            raise BadResponse(f"Transfer-Encoding {coding[:40]!r}: only chunked is read")
        return None, True, keep_alive and "content-length" not in headers
    given = headers.get("content-length")
    if given is None:  # read to the close: such a body never settles, so its connection is never reused
        return None, False, keep_alive
    values = {v.strip() for v in given.split(",")}
    if len(values) != 1:
        raise BadResponse(f"Content-Length {given[:40]!r}")
    value = values.pop()
    if not value.isdigit() or not value.isascii():
        raise BadResponse(f"Content-Length {value[:40]!r}")
    return int(value), False, keep_alive


async def read_answer(conn: Connection) -> Response:
    """The first final answer on `conn` (1xx skipped): its head read, its body ready to read."""
    while True:
        head = await conn.read_until(b"\r\n\r\n", HEAD_LIMIT)
        if head is None:
            raise Disconnected(conn.error)
        version, status, reason, headers = parse_head(head)
        if status == 101:
            raise BadResponse("101 Switching Protocols to a GET")
        if status >= 200:
            break
    length, chunked, keep_alive = framing(version, status, headers)
    return Response(status, reason, headers, length, Body(conn, length, chunked), keep_alive)
