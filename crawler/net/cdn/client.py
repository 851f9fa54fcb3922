"""The CDN's HTTP/1.1 client: keep-alive GETs whose bodies are handed over as the socket delivered them.

    async with CdnClient(limit=64, connect_timeout=30, tls=True, headers={"User-Agent": ua}) as client:
        async with client.get(URL("https://image.civitai.com/.../a.jpeg")) as response:
            response.status, response.headers.get("content-type"), response.content_length
            while chunk := await response.content.read(256 * 1024): ...

Why not aiohttp (the API still uses it): an image is one GET and a body streamed to disk, and aiohttp
spends more instructions per image on that than the whole rest of the crawl (`make bench`, instructions
group; README, issue 17). Here a body reaches the store as the socket delivered it, uncopied (`wire`).

The stages, one module each: `wire` (a connection's received bytes, flow control), `framing` (an answer's
head and body), `errors` (how a request fails), and here the pool and the request.
- A GET is never redirected here; the downloader follows redirects itself. `Accept-Encoding: identity`
  is asked for and nothing is decompressed: bytes are kept as sent.
- Keep-alive: a connection goes back to its host's idle pool only when its body was read to the end (or
  lies whole in the buffer), the answer was HTTP/1.1 without `Connection: close`, and nothing more came.
  An idle connection the server closed is dropped before reuse; a GET that finds a reused connection
  closed before any byte of its answer is sent again on the next (a GET is safe to repeat): only a fresh
  connection's failure is the request's.
- TLS with SNI and the trust given (`net.sessions.tls_context`; True: the system's store, read at the
  first https connection). Connecting (DNS, TCP, TLS handshake) is bounded by `connect_timeout` and
  raises TimeoutError past it. Waiting for an answer or a body is not bounded here: the downloader
  watches those waits (`net.stalls`) and cancels the task.

How it fails: a `ClientError` (`errors`), TimeoutError while connecting, or the caller's cancellation;
the connection it happened on is closed, never pooled.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque
from collections.abc import Mapping
from typing import Any

from yarl import URL

from crawler.net.cdn.errors import BadResponse, ConnectFailed, Disconnected, ResolveFailed, TlsFailed
from crawler.net.cdn.framing import Response, read_answer
from crawler.net.cdn.wire import Connection

_BUFFER = 512 * 1024


class _Get:
    """`client.get(url)`: the request sent and its head read on entry; its connection pooled or closed on exit."""

    __slots__ = ("_client", "_url", "_response", "_conn")

    def __init__(self, client: CdnClient, url: URL) -> None:
        self._client = client
        self._url = url

    async def __aenter__(self) -> Response:
        self._response, self._conn = await self._client._request(self._url)
        return self._response

    async def __aexit__(self, *_: object) -> None:
        response, conn = self._response, self._conn
        if response.keep_alive and response.content.settle() and not conn.chunks and not conn.eof:
            self._client._idle(conn)
        else:
            conn.close()


class CdnClient:
    """One per downloader pool: its idle connections per (scheme, host, port), at most `limit` each.

    Connections in use are bounded by the callers (a pool's workers each hold one at a time)."""

    def __init__(self, *, limit: int, connect_timeout: float, tls: ssl.SSLContext | bool,
                 headers: Mapping[str, str], buffer: int = _BUFFER) -> None:
        fields = {**headers, "Accept-Encoding": "identity"}
        if any(c in name + value for name, value in fields.items() for c in "\r\n\0"):
            raise ValueError("a request header holds a line break")
        self._fields = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
        try:
            self._fields.encode("latin-1")  # as every request will be
        except UnicodeEncodeError:
            raise ValueError("a request header holds a character outside Latin-1") from None
        self._limit = limit
        self._connect_timeout = connect_timeout
        if tls is False:
            raise ValueError("tls=False: the CDN is never fetched unverified (give a context, or True)")
        self._tls_context: ssl.SSLContext | None = tls if isinstance(tls, ssl.SSLContext) else None
        self._buffer = buffer
        self._pools: dict[tuple[str, str, int], deque[Connection]] = {}
        self._closed = False
        self.connections = 0  # connections opened (TCP connects, and TLS handshakes over https)

    async def __aenter__(self) -> CdnClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            for conn in pool:
                conn.close()
        self._pools.clear()
        await asyncio.sleep(0)  # let the transports finish closing before the loop may end

    def get(self, url: URL) -> _Get:
        """GET `url` (an absolute http or https URL); a redirect is an answer like any other, never followed."""
        return _Get(self, url)

    async def _request(self, url: URL) -> tuple[Response, Connection]:
        scheme, host = url.scheme, url.raw_host
        port = url.port
        if scheme not in ("http", "https") or not host or port is None:  # the allow-list lets no other through
            raise BadResponse(f"cannot request {str(url)[:80]!r}")
        key = (scheme, host, port)
        request = (f"GET {url.raw_path_qs} HTTP/1.1\r\nHost: {url.host_port_subcomponent}\r\n{self._fields}\r\n"
                   .encode("latin-1"))
        while True:
            conn = self._reused(key)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(key)
            try:
                conn.answered = False
                assert conn.transport is not None
                conn.transport.write(request)
                response = await read_answer(conn)
            except Disconnected:
                conn.close()
                if reused and not conn.answered:
                    continue  # the server had closed the idle connection: again on the next (or a fresh one)
                raise
            except BaseException:
                conn.close()
                raise
            return response, conn

    def _reused(self, key: tuple[str, str, int]) -> Connection | None:
        pool = self._pools.get(key)
        while pool:
            conn = pool.pop()  # the most recently used: the least likely to have been closed by the server
            if not conn.eof and not conn.chunks:
                return conn
            conn.close()  # closed by the server while idle, or it sent something nobody asked for
        return None

    def _idle(self, conn: Connection) -> None:
        pool = self._pools.setdefault(conn.key, deque())
        if self._closed or len(pool) >= self._limit:
            conn.close()
        else:
            pool.append(conn)

    async def _connect(self, key: tuple[str, str, int]) -> Connection:
        # Each address in turn, as aiohttp does, so that the failure told is one address's, not asyncio's
        # "Multiple exceptions". Not cached: connections are kept, so a crawl connects a few times per host.
        scheme, host, port = key
        tls = self._context() if scheme == "https" else None
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout):
            try:
                *others, last = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)  # one at least, or raises
            except OSError as e:
                raise ResolveFailed(host, e) from None
            for *_, address in others:
                with contextlib.suppress(ConnectFailed):  # the next address then
                    return await self._open(loop, key, address, tls)
            return await self._open(loop, key, last[4], tls)

    async def _open(self, loop: asyncio.AbstractEventLoop, key: tuple[str, str, int], address: tuple[Any, ...],
                    tls: ssl.SSLContext | None) -> Connection:
        try:
            _, conn = await loop.create_connection(lambda: Connection(loop, key, self._buffer), address[0], address[1],
                                                   ssl=tls, server_hostname=key[1] if tls is not None else None)
        except ssl.SSLError as e:
            raise TlsFailed(e) from None
        except OSError as e:
            raise ConnectFailed(e) from None
        self.connections += 1
        return conn

    def _context(self) -> ssl.SSLContext:
        if self._tls_context is None:
            self._tls_context = ssl.create_default_context()  # built on first use: reading the CAs takes ~40 ms
        return self._tls_context
