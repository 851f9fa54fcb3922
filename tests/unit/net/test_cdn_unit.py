"""net/cdn against scripted raw-socket servers: each framing, each keep-alive rule and race,
flow control, malformed answers and TLS -- what the CDN client promises, byte for byte, over real sockets.

A script answers the n-th request (over all connections) with raw bytes it writes itself; the server
records which connection each request came on, so reuse is seen from the server's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trustme
from yarl import URL

from crawler.net.cdn import errors as cdn_errors
from crawler.net.cdn.client import CdnClient
from crawler.net.cdn.errors import BadResponse, ConnectFailed, Disconnected, TlsFailed, Truncated
from crawler.net.cdn.framing import HEAD_LIMIT, read_answer
from crawler.net.cdn.wire import Connection
from crawler.net.errors import connection_detail

pytestmark = pytest.mark.timeout(30)

CLOSE = object()  # a script's answer: close the connection without a byte
Answer = bytes | object | Callable[[asyncio.StreamWriter], Awaitable[Any]]


def ok(body: bytes, *extra: str, version: str = "1.1") -> bytes:
    head = "".join(f"{line}\r\n" for line in extra)
    return f"HTTP/{version} 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


class Script:
    """A raw HTTP/1.1 server answering request i with `answers[min(i, last)]`; `close_after` closes there."""

    def __init__(self, answers: list[Answer], close_after: set[int] | None = None) -> None:
        self.answers = answers
        self.close_after = close_after or set()
        self.connections = 0
        self.requests: list[tuple[int, bytes]] = []  # (connection number, request head)
        self.closed: list[int] = []  # connections the client closed (EOF read while waiting for a request)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.closed.append(number)
                    return
                index = len(self.requests)
                self.requests.append((number, head))
                answer = self.answers[min(index, len(self.answers) - 1)]
                if answer is CLOSE:
                    return
                if callable(answer):
                    await answer(writer)
                else:
                    writer.write(answer)  # type: ignore[arg-type]
                    await writer.drain()
                if index in self.close_after:
                    return
        except ConnectionError:
            self.closed.append(number)
        finally:
            writer.close()

    @property
    def on(self) -> list[int]:
        """The connection number each request came on."""
        return [n for n, _ in self.requests]


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed or overloaded server does."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01" + b"\x00" * 7)
    writer.transport.abort()


@contextlib.asynccontextmanager
async def serving(script: Script, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> AsyncIterator[str]:
    server = await asyncio.start_server(script.serve, host, 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://{host}:{port}"
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


def client(**kw: Any) -> CdnClient:
    return CdnClient(limit=kw.pop("limit", 8), connect_timeout=kw.pop("connect_timeout", 5),
                     tls=kw.pop("tls", True), headers=kw.pop("headers", {"User-Agent": "t/1"}), **kw)


async def fetch(c: CdnClient, url: str, size: int = 1 << 20) -> tuple[int, dict[str, str], int | None, bytes]:
    async with c.get(URL(url)) as r:
        body = b""
        while chunk := await r.content.read(size):
            body += chunk
        return r.status, r.headers, r.content_length, body


async def settle(script: Script, closed: int, within: float = 2.0) -> None:
    """Wait (bounded) until the server has seen `closed` connections closed by the client."""
    for _ in range(int(within / 0.01)):
        if len(script.closed) >= closed:
            return
        await asyncio.sleep(0.01)


# --- the request ---

async def test_the_request_names_the_host_and_port_the_encoded_path_and_asks_for_identity():
    script = Script([ok(b"x")])
    async with serving(script) as base, client(headers={"User-Agent": "Xa/2", "Accept": "image/*"}) as c:
        await fetch(c, base + "/a b/c.jpeg?x=1&y=a%26b#frag")
    head = script.requests[0][1].decode()
    port = base.rsplit(":", 1)[1]
    assert head == (f"GET /a%20b/c.jpeg?x=1&y=a%26b HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: Xa/2\r\n"
                    f"Accept: image/*\r\nAccept-Encoding: identity\r\n\r\n")


async def test_the_address_asked_for_is_the_one_connected_to():
    script = Script([ok(b"x")])
    async with serving(script, host="127.0.0.2") as base, client() as c:  # loopback, but not 127.0.0.1
        assert (await fetch(c, base + "/a"))[3] == b"x"


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:21/a.jpeg", "/a.jpeg", "http:///a.jpeg", "ftp://h/" + "a" * 100])
async def test_only_absolute_http_urls_are_requested(url):
    async with client() as c:
        with pytest.raises(BadResponse) as caught:
            await fetch(c, url)
    assert str(caught.value) == f"cannot request {str(URL(url))[:80]!r}"


def _resolving(monkeypatch: pytest.MonkeyPatch, answer: Callable[[str, int], Any]) -> None:
    """The running loop's resolver answering `answer(host, port)`: no machine here has DNS to ask (the
    sockets connected to stay real)."""
    loop = asyncio.get_running_loop()

    async def getaddrinfo(host: str, port: int, **_: Any) -> Any:
        return answer(host, port)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


async def test_each_address_of_a_host_is_tried_in_turn(monkeypatch):
    with socket.socket() as closed:
        closed.bind(("127.0.0.2", 0))
        dead = closed.getsockname()[1]
        script = Script([ok(b"second address")])
        async with serving(script) as base, client() as c:
            port = int(base.rsplit(":", 1)[1])
            _resolving(monkeypatch, lambda host, _: [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", dead)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))])
            assert (await fetch(c, f"http://cdn.test:{port}/a"))[3] == b"second address"
            assert script.requests[0][1].startswith(f"GET /a HTTP/1.1\r\nHost: cdn.test:{port}\r\n".encode())
            await fetch(c, f"http://cdn.test:{port}/b")
    assert script.on == [1, 1]  # kept in the host's pool like any other


async def test_any_address_of_an_https_host_is_reached_over_tls(ca, monkeypatch):
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    script = Script([ok(b"first address")])
    async with serving(script, _server_tls(ca, [])) as base, client(tls=trusting) as c:
        port = int(base.rsplit(":", 1)[1])
        _resolving(monkeypatch, lambda host, _: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))] * 2)
        assert (await fetch(c, f"https://localhost:{port}/a"))[3] == b"first address"
        await fetch(c, f"https://localhost:{port}/b")
    assert script.on == [1, 1]


async def test_when_every_address_refuses_the_last_ones_failure_is_told(monkeypatch):
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.2", 0))
        b.bind(("127.0.0.3", 0))
        _resolving(monkeypatch, lambda host, _: [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", a.getsockname()),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", b.getsockname())])
        last = b.getsockname()
        async with client() as c:
            with pytest.raises(ConnectFailed) as caught:
                await fetch(c, "http://cdn.test/a")
    assert str(last[1]) in str(caught.value) and "127.0.0.3" in str(caught.value), caught.value


async def test_a_name_that_does_not_resolve_is_a_resolve_failure(monkeypatch):
    def nowhere(host: str, port: int) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    _resolving(monkeypatch, nowhere)
    async with client() as c:
        with pytest.raises(cdn_errors.ResolveFailed) as caught:
            await fetch(c, "https://nowhere.test/a")
    assert str(caught.value) == "cannot resolve nowhere.test: [Errno -2] Name or service not known"
    assert isinstance(caught.value.os_error, socket.gaierror)


@pytest.mark.parametrize("name, value", [("User-Agent", "a\r\nX-Evil: 1"), ("User-Agent", "a\nb"),
                                         ("User-Agent", "a\0"), ("X-A\r\nX-B", "1")])
def test_a_header_with_a_line_break_is_refused(name, value):
    with pytest.raises(ValueError) as caught:
        client(headers={name: value})
    assert str(caught.value) == "a request header holds a line break"


def test_a_header_may_hold_any_other_character():
    assert client(headers={"X-Agent": "XX/1.0 (x; y) \t \u00e9"}) is not None


def test_a_header_outside_latin_1_is_refused():
    with pytest.raises(ValueError, match=r"^a request header holds a character outside Latin-1$"):
        client(headers={"User-Agent": "bot \u2603"})


def test_tls_false_is_refused():
    with pytest.raises(ValueError, match=r"^tls=False: the CDN is never fetched unverified \(give a context, or True\)$"):
        client(tls=False)


# --- bodies ---

async def test_a_content_length_body_comes_as_sent_and_its_connection_is_reused():
    body = bytes(range(256)) * 4096  # 1 MiB, many socket reads
    script = Script([ok(body), ok(b"second")])
    async with serving(script) as base, client() as c:
        first = await fetch(c, base + "/a", size=100_000)
        second = await fetch(c, base + "/b")
    assert first == (200, {"content-type": "image/jpeg", "content-length": str(len(body))}, len(body), body)
    assert second[3] == b"second"
    assert script.on == [1, 1] and c.connections == 1


async def test_reads_never_exceed_the_size_asked():
    script = Script([ok(b"0123456789"), chunked(b"abcd", b"efghi")])
    async with serving(script) as base, client() as c:
        async with c.get(URL(base + "/a")) as r:
            pieces = [await r.content.read(3) for _ in range(5)]
        async with c.get(URL(base + "/b")) as r:
            framed = [await r.content.read(3) for _ in range(6)]
    assert pieces == [b"012", b"345", b"678", b"9", b""]
    assert framed == [b"abc", b"d", b"efg", b"hi", b"", b""]  # never across a chunk's end


async def test_bytes_past_the_content_length_are_not_body_and_the_connection_is_not_reused():
    script = Script([ok(b"ab") + b"HTTP/1.1 200 OK\r\n", ok(b"next")])
    async with serving(script) as base, client() as c:
        assert (await fetch(c, base + "/a"))[3] == b"ab"
        assert (await fetch(c, base + "/b"))[3] == b"next"
    assert script.on == [1, 2]


def chunked(*pieces: bytes, trailer: bytes = b"") -> bytes:
    framed = b"".join(b"%x;name=value;flag\r\n%s\r\n" % (len(p), p) for p in pieces)
    return (b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: Chunked\r\n\r\n" + framed
            + b"0\r\n" + trailer + b"\r\n")


async def test_a_chunked_body_drops_extensions_and_trailers_and_keeps_the_connection():
    script = Script([chunked(b"abc", b"d" * 70_000, b"e", trailer=b"X-Sum: 1\r\nX-Other: 2\r\n"), ok(b"next")])
    async with serving(script) as base, client() as c:
        status, _, length, body = await fetch(c, base + "/a", size=1000)
        after = await fetch(c, base + "/b")
    assert (status, length, body) == (200, None, b"abc" + b"d" * 70_000 + b"e")
    assert after[3] == b"next" and script.on == [1, 1]


async def test_a_chunked_body_wins_over_a_content_length_and_its_connection_is_not_reused():
    answer = chunked(b"abc").replace(b"Transfer-Encoding", b"Content-Length: 99\r\nTransfer-Encoding")
    script = Script([answer, ok(b"next")])
    async with serving(script) as base, client() as c:
        first = await fetch(c, base + "/a")
        await fetch(c, base + "/b")
    assert (first[2], first[3]) == (None, b"abc") and script.on == [1, 2]


async def test_a_body_without_framing_is_read_to_the_close_and_the_connection_not_reused():
    unframed = b"HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\n\r\n" + b"g" * 100_000
    script = Script([unframed, ok(b"next")], close_after={0})
    async with serving(script) as base, client() as c:
        first = await fetch(c, base + "/a")
        await fetch(c, base + "/b")
    assert (first[2], first[3]) == (None, b"g" * 100_000) and script.on == [1, 2]


async def test_1xx_answers_are_skipped_and_204_and_304_have_no_body():
    script = Script([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok(b"real"),
                     b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n",
                     ok(b"last")])
    async with serving(script) as base, client() as c:
        got = [await fetch(c, f"{base}/{i}") for i in range(4)]
    assert [(s, n, b) for s, _, n, b in got] == [(200, 4, b"real"), (204, 0, b""), (304, 0, b""), (200, 4, b"last")]
    assert script.on == [1, 1, 1, 1]


async def test_repeated_headers_are_joined_and_names_lower_cased():
    answer = b"HTTP/1.1 404 Not Found\r\nX-A: 1\r\nx-a:  2 \r\nContent-Length: 0\r\n\r\n"
    script = Script([answer])
    async with serving(script) as base, client() as c, c.get(URL(base + "/a")) as r:
        assert (r.status, r.reason, r.headers["x-a"]) == (404, "Not Found", "1, 2")


# --- keep-alive ---

async def test_connection_close_and_http_1_0_are_not_reused():
    script = Script([ok(b"a", "Connection: Keep-Alive, Close"), ok(b"b", "Connection: keep-alive", version="1.0"),
                     ok(b"c", "Connection: keep-alive"), ok(b"d")])
    async with serving(script) as base, client() as c:
        for path in ("a", "b", "c", "d"):
            await fetch(c, f"{base}/{path}")
    assert script.on == [1, 2, 3, 3]


async def test_an_idle_connection_the_server_closed_is_dropped_before_reuse():
    script = Script([ok(b"a"), ok(b"b")], close_after={0})
    async with serving(script) as base, client() as c:
        await fetch(c, base + "/a")
        await asyncio.sleep(0.1)  # the server's FIN arrives while the connection idles
        assert (await fetch(c, base + "/b"))[3] == b"b"
    assert script.on == [1, 2] and c.connections == 2


async def test_a_reused_connection_closed_before_any_answer_is_retried_once_on_a_fresh_one():
    # The keep-alive race: the server takes the second request on the reused connection, then closes it unanswered.
    script = Script([ok(b"a"), CLOSE, ok(b"c")])
    async with serving(script) as base, client() as c:
        await fetch(c, base + "/a")
        assert (await fetch(c, base + "/b"))[3] == b"c"
    assert script.on == [1, 1, 2]


async def test_a_fresh_connection_closed_before_any_answer_is_the_requests_failure():
    script = Script([CLOSE])
    async with serving(script) as base, client() as c:
        with pytest.raises(Disconnected) as caught:
            await fetch(c, base + "/a")
    assert script.on == [1]
    port = base.rsplit(":", 1)[1]
    assert connection_detail(caught.value, base + "/a") == (
        f"127.0.0.1:{port} closed the connection before answering for GET {base}/a")


async def test_bytes_sent_to_an_idle_connection_make_it_unusable():
    async def then_more(writer: asyncio.StreamWriter) -> None:
        writer.write(ok(b"a"))
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(ok(b"unasked"))  # after the client put the connection back in its pool

    script = Script([then_more, ok(b"b")])
    async with serving(script) as base, client() as c:
        await fetch(c, base + "/a")
        await asyncio.sleep(0.3)
        assert (await fetch(c, base + "/b"))[3] == b"b"
    assert script.on == [1, 2]


async def test_a_connection_reset_before_any_answer_says_so():
    async def unanswered(writer: asyncio.StreamWriter) -> None:
        reset(writer)

    script = Script([unanswered])
    async with serving(script) as base, client() as c:
        with pytest.raises(Disconnected) as caught:
            await fetch(c, base + "/a")
    port = base.rsplit(":", 1)[1]
    assert connection_detail(caught.value, base + "/a") == (
        f"127.0.0.1:{port}: connection reset by the other side before answering for GET {base}/a")


async def test_a_head_exactly_at_the_limit_is_read_and_one_byte_more_is_not():
    def head_of(length: int) -> bytes:
        start = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: "
        return start + b"p" * (length - len(start)) + b"\r\n\r\nab"

    assert head_of(HEAD_LIMIT).index(b"\r\n\r\n") == HEAD_LIMIT
    script = Script([trickled(head_of(HEAD_LIMIT), (4096,)), trickled(head_of(HEAD_LIMIT + 1), (4096,))])
    async with serving(script) as base, client() as c:
        assert (await fetch(c, base + "/a"))[3] == b"ab"
        with pytest.raises(BadResponse, match=f"^a head or line longer than {HEAD_LIMIT} bytes$"):
            await fetch(c, base + "/b")


async def test_a_body_left_unread_closes_its_connection():
    script = Script([ok(b"x" * 2_000_000), ok(b"b")])
    async with serving(script) as base, client() as c:
        async with c.get(URL(base + "/a")) as r:
            assert len(await r.content.read(1000)) == 1000
        await fetch(c, base + "/b")
        await settle(script, 1)
        assert script.closed == [1]  # by the client, while connection 2 idles in its pool
    assert script.on == [1, 2]


async def test_a_small_body_left_unread_but_buffered_is_dropped_and_the_connection_reused():
    answer = b"HTTP/1.1 302 Found\r\nLocation: /b\r\nContent-Length: 9\r\n\r\nsee there"
    script = Script([answer, ok(b"b")])
    async with serving(script) as base, client() as c:
        async with c.get(URL(base + "/a")) as r:
            await asyncio.sleep(0.05)  # the body is in the buffer, nobody reads it
            assert (r.status, r.headers["location"]) == (302, "/b")
        assert (await fetch(c, base + "/b"))[3] == b"b"
    assert script.on == [1, 1]


async def test_a_read_cancelled_mid_body_closes_the_connection():
    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nab")
        await writer.drain()
        await asyncio.sleep(10)

    script = Script([trickle, ok(b"b")])
    async with serving(script) as base, client() as c:
        async def read_all() -> None:
            await fetch(c, base + "/a")

        task = asyncio.create_task(read_all())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await fetch(c, base + "/b")
    assert script.on == [1, 2]


async def test_a_reused_connection_that_began_answering_then_closed_is_not_retried():
    script = Script([ok(b"a"), b"HTTP/1.1 200 OK\r\nContent-Le"], close_after={1})
    async with serving(script) as base, client() as c:
        await fetch(c, base + "/a")
        with pytest.raises(Disconnected):
            await fetch(c, base + "/b")
    assert script.on == [1, 1]  # a half-sent answer may have been acted on: not the keep-alive race


# --- answers in pieces ---

def trickled(answer: bytes, sizes: tuple[int, ...]) -> Callable[[asyncio.StreamWriter], Awaitable[None]]:
    """An answer written a few bytes at a time (`sizes` in turn), each piece its own socket read."""
    async def write(writer: asyncio.StreamWriter) -> None:
        at, turn = 0, 0
        while at < len(answer):
            size = sizes[turn % len(sizes)]
            writer.write(answer[at:at + size])
            await writer.drain()
            await asyncio.sleep(0.002)
            at, turn = at + size, turn + 1
    return write


async def test_an_answer_trickled_a_few_bytes_at_a_time_reads_the_same():
    answer = chunked(b"abcdef", b"\r\n\r\n", b"g" * 40, trailer=b"X-T: 1\r\n")
    script = Script([trickled(answer, (1, 2, 3)), ok(b"next")])
    async with serving(script) as base, client() as c:
        status, headers, length, body = await fetch(c, base + "/a", size=5)
        assert (await fetch(c, base + "/b"))[3] == b"next"
    assert (status, headers["transfer-encoding"], length) == (200, "Chunked", None)
    assert body == b"abcdef\r\n\r\n" + b"g" * 40 and script.on == [1, 1]


async def test_a_head_in_two_pieces_ends_at_its_first_empty_line():
    body = b"\r\n\r\nbody with empty lines\r\n\r\n"
    answer = ok(body)
    split = answer.index(b"\r\n\r\n") - 5  # the first piece ends inside the head
    script = Script([trickled(answer, (split, len(answer)))])
    async with serving(script) as base, client() as c:
        status, headers, _, got = await fetch(c, base + "/a")
    assert (status, headers["content-length"], got) == (200, str(len(body)), body)


# --- the wire, driven through a real socket pair ---

@contextlib.asynccontextmanager
async def wire(high: int) -> AsyncIterator[tuple[Connection, socket.socket]]:
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, conn = await loop.connect_accepted_socket(lambda: Connection(loop, ("http", "h", 80), high), ours)
    try:
        yield conn, theirs
    finally:
        transport.close()
        theirs.close()


async def buffered(conn: Connection, size: int) -> None:
    for _ in range(200):
        if conn.size >= size:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{conn.size} of {size} bytes arrived")


async def test_the_wire_pauses_past_its_mark_and_resumes_at_a_quarter_of_it():
    async with wire(high=1000) as (conn, theirs):
        theirs.send(b"a" * 600)
        await buffered(conn, 600)
        theirs.send(b"b" * 400)
        await buffered(conn, 1000)
        assert conn.transport.is_reading()  # at the mark, not past it
        theirs.send(b"c")
        await buffered(conn, 1001)
        assert not conn.transport.is_reading()
        assert await conn.read(600) == b"a" * 600
        assert await conn.read(151) == b"b" * 151
        assert (conn.size, conn.transport.is_reading()) == (250, True)  # 250 = 1000 // 4: resumed
        theirs.send(b"d" * 751)
        await buffered(conn, 1001)
        assert not conn.transport.is_reading()  # and paused again past the mark


async def test_the_wire_keeps_reading_below_its_low_mark_while_paused_above_it():
    async with wire(high=1000) as (conn, theirs):
        theirs.send(b"a" * 1001)
        await buffered(conn, 1001)
        assert await conn.read(750) == b"a" * 750
        assert (conn.size, conn.transport.is_reading()) == (251, False)  # still above a quarter


async def test_a_head_across_deliveries_leaves_the_rest_counted_in_the_buffer():
    async with wire(high=1000) as (conn, _):
        for piece in (b"HTTP/1.1 200 OK\r\nConte", b"nt-Length: 4\r\n\r\nab", b"cd"):  # queued before it reads
            conn.data_received(piece)
        assert await conn.read_until(b"\r\n\r\n", 100) == b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"
        assert (conn.size, list(conn.chunks)) == (4, [b"ab", b"cd"])


async def test_two_deliveries_before_the_reader_runs_wake_it_once_and_keep_both():
    async with wire(high=1000) as (conn, _):
        reader = asyncio.create_task(conn.read(100))
        await asyncio.sleep(0)  # the reader waits
        conn.data_received(b"one")
        conn.data_received(b"two")
        assert await asyncio.wait_for(reader, 2) == b"one"
        assert await conn.read(100) == b"two"


# --- flow control ---

async def test_reading_pauses_while_the_buffer_is_full_so_the_server_is_held_back():
    total = 48 * 1024 * 1024
    sent = 0

    async def flood(writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        writer.transport.set_write_buffer_limits(high=64 * 1024)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n".encode())
        piece = b"z" * 65536
        while sent < total:
            writer.write(piece)
            await writer.drain()
            sent += len(piece)

    script = Script([flood])
    async with serving(script) as base, client(buffer=256 * 1024) as c, c.get(URL(base + "/a")) as r:
        assert len(await r.content.read(1)) == 1
        await asyncio.sleep(0.5)  # the reader idles: the client buffers a little, the kernel some more, then TCP stops the server
        held = r.content._conn.size  # type: ignore[attr-defined]
        assert held <= 256 * 1024 + 256 * 1024, held  # the mark plus at most one socket read
        assert sent < total // 2, sent
        received = 1
        while chunk := await r.content.read(1 << 20):
            received += len(chunk)
    assert received == total and sent == total


# --- what fails ---

@pytest.mark.parametrize("answer, message", [
    (b"HTTP/2 200 OK\r\n\r\n", "status line 'HTTP/2 200 OK'"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "status line 'HTTP/1.1 2000 OK'"),
    (b"HTTP/1.1 200 OK\r\nNo-Colon\r\n\r\n", "header line 'No-Colon'"),
    (b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n", "header line ' folded'"),
    (b"HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n", "header line 'X A: 1'"),
    (b"HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n", "header line 'X-A : 1'"),
    (b"HTTP/1.1 200 OK\r\n: 1\r\n\r\n", "header line ': 1'"),
    (b"HTTP/1.1 200 OK\r\n\xc4: 1\r\n\r\n", "header line '\xc4: 1'"),
    (b"HTTP/1.1 200 OK\r\nX-" + b"a" * 100 + b"\r\n\r\n", "header line 'X-" + "a" * 78 + "'"),
    (b"HTTP/1.1 OK " + b"o" * 100 + b"\r\n\r\n", "status line 'HTTP/1.1 OK " + "o" * 68 + "'"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "Content-Length '5, 6'"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length '-1'"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 39 + b"x" * 9 + b"\r\n\r\n", "Content-Length '" + "1" * 39 + "x'"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: " + b", ".join(b"%d" % i for i in range(30)) + b"\r\n\r\n",
     "Content-Length '" + ", ".join(str(i) for i in range(30))[:40] + "'"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "Transfer-Encoding 'gzip, chunked': only chunked is read"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "Transfer-Encoding 'gzip': only chunked is read"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + b"x" * 60 + b"\r\n\r\n",
     f"Transfer-Encoding '{'x' * 40}': only chunked is read"),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101 Switching Protocols to a GET"),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", "a head or line longer than 65536 bytes"),
])
async def test_a_malformed_head_is_a_bad_response_and_closes_the_connection(answer, message):
    script = Script([answer, ok(b"fine")])
    async with serving(script) as base, client() as c:
        with pytest.raises(BadResponse) as caught:
            await fetch(c, base + "/a")
        assert str(caught.value) == message
        assert (await fetch(c, base + "/b"))[3] == b"fine"
    assert script.on == [1, 2]
    port = base.rsplit(":", 1)[1]
    assert connection_detail(caught.value, base + "/a") == (
        f"127.0.0.1:{port} answered with a malformed response ({message}) for GET {base}/a")


async def test_same_content_length_twice_is_one():
    script = Script([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab"])
    async with serving(script) as base, client() as c:
        assert (await fetch(c, base + "/a"))[2:] == (2, b"ab")


@pytest.mark.parametrize("answer, message", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcdefg",
     "received 7 of 10 bytes, then the connection closed"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc",
     "received 3 bytes of a chunked body, then a chunk cut short: the connection closed"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
     "received 3 bytes of a chunked body, then no chunk size: the connection closed"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r",
     "received 3 bytes of a chunked body, then no CRLF after a chunk's data: the connection closed"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXYZ\r\n0\r\n\r\n",
     None),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n",
     "received 0 bytes of a chunked body, then no end of the trailers: the connection closed"),
])
async def test_a_body_cut_short_is_truncated(answer, message):
    script = Script([answer], close_after={0})
    async with serving(script) as base, client() as c:
        with pytest.raises((Truncated, BadResponse)) as caught:
            await fetch(c, base + "/a", size=3)  # several reads: what came is counted across them
    if message is None:  # something else where a chunk's data must end: malformed, not merely short
        assert (type(caught.value), str(caught.value)) == (BadResponse, "no CRLF after a chunk's data")
    else:
        assert (type(caught.value), str(caught.value)) == (Truncated, message)


@pytest.mark.parametrize("size, shown", [(b"zz", "b'zz'"), (b"X", "b'X'"), (b"0x1A", "b'0x1A'"), (b"", "b''"),
                                         (b"1" * 15 + b"g" * 15, repr(b"1" * 15 + b"g" * 5))])
async def test_a_chunk_size_that_is_not_hexadecimal_is_a_bad_response(size, shown):
    script = Script([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\nab\r\n0\r\n\r\n"])
    async with serving(script) as base, client() as c:
        with pytest.raises(BadResponse) as caught:
            await fetch(c, base + "/a")
    assert str(caught.value) == f"chunk size {shown} is not hexadecimal"


async def test_a_chunk_size_is_hexadecimal_in_either_case():
    body = bytes(range(26))
    script = Script([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1A\r\n" + body + b"\r\n0\r\n\r\n"])
    async with serving(script) as base, client() as c:
        assert (await fetch(c, base + "/a"))[3] == body


def test_a_body_cut_by_another_failure_names_it():
    # Driven through the protocol's own callbacks: a keep-alive probe timing out is hard to stage on loopback.
    conn = Connection(asyncio.new_event_loop(), ("http", "h", 80), 1 << 20)
    try:
        conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")
        conn.connection_lost(TimeoutError(110, "Connection timed out"))
        with pytest.raises(Truncated) as caught:
            conn.loop.run_until_complete(_read_body(conn))
    finally:
        conn.loop.close()
    assert str(caught.value) == "received 3 of 9 bytes, then the connection failed ([Errno 110] Connection timed out)"


async def _read_body(conn: Connection) -> None:
    response = await read_answer(conn)
    while await response.content.read(1 << 20):
        pass


async def test_an_unframed_body_ended_by_a_reset_is_truncated():
    async def cut(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(0.05)
        reset(writer)

    script = Script([cut])
    async with serving(script) as base, client() as c:
        with pytest.raises(Truncated, match=r"^received 3 bytes, then the connection was reset$"):
            await fetch(c, base + "/a")


async def test_a_refused_port_is_a_connect_failure_in_words():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        async with client() as c:
            with pytest.raises(ConnectFailed) as caught:
                await fetch(c, f"http://127.0.0.1:{port}/a")
    assert connection_detail(caught.value, f"http://127.0.0.1:{port}/a") == (
        f"cannot connect to 127.0.0.1:{port}: connection refused: nothing listens on that port "
        f"for GET http://127.0.0.1:{port}/a")


def test_an_unresolvable_host_is_said_in_words():
    error = cdn_errors.ResolveFailed("nowhere.invalid", socket.gaierror(-2, "Name or service not known"))
    assert connection_detail(error, "https://nowhere.invalid/a") == (
        "cannot resolve host nowhere.invalid (no such name in DNS, or no DNS reachable) for GET https://nowhere.invalid/a")


# --- TLS ---

@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_tls(ca: trustme.CA, names: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,misc,return-value]
    return context


async def test_tls_sends_the_host_name_and_trusts_the_ca_given(ca):
    names: list[str] = []
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    script = Script([ok(b"secret"), ok(b"again")])
    async with serving(script, _server_tls(ca, names)) as base, client(tls=trusting) as c:
        url = base.replace("127.0.0.1", "localhost")
        assert (await fetch(c, url + "/a"))[3] == b"secret"
        assert (await fetch(c, url + "/b"))[3] == b"again"
    assert names == ["localhost"] and script.on == [1, 1] and c.connections == 1


async def test_an_untrusted_certificate_is_a_tls_failure_in_words(ca):
    script = Script([ok(b"never")])
    async with serving(script, _server_tls(ca, [])) as base, client(tls=ssl.create_default_context()) as c:
        with pytest.raises(TlsFailed) as caught:
            await fetch(c, base + "/a")
    assert caught.value.certificate
    detail = connection_detail(caught.value, base + "/a")
    port = base.rsplit(":", 1)[1]
    assert detail.startswith(f"TLS certificate of 127.0.0.1:{port} not trusted (certificate verify failed: ")
    assert detail.endswith(f"trust its CA with --ca-file PEM or SSL_CERT_FILE for GET {base}/a")
    assert script.requests == []


async def test_tls_true_trusts_the_system_store_as_found_at_the_first_connection(ca, tmp_path, monkeypatch):
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    script = Script([ok(b"trusted")])
    async with serving(script, _server_tls(ca, [])) as base, client(tls=True) as c:
        monkeypatch.setenv("SSL_CERT_FILE", str(pem))  # after the client was made: read when first needed
        assert (await fetch(c, base.replace("127.0.0.1", "localhost") + "/a"))[3] == b"trusted"


# --- the pool ---

async def test_the_idle_pool_keeps_at_most_limit_connections_per_host():
    async def slow(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.2)  # all three requests are in flight at once: three connections
        writer.write(ok(b"s"))

    script = Script([slow])
    async with serving(script) as base, client(limit=2) as c:
        await asyncio.gather(*(fetch(c, f"{base}/{i}") for i in range(3)))
        await settle(script, 1)
        assert len(script.closed) == 1  # the third went back to a full pool: closed
        await asyncio.gather(*(fetch(c, f"{base}/again{i}") for i in range(2)))
    assert script.connections == 3


async def test_a_connection_released_after_the_client_closed_is_closed():
    script = Script([ok(b"a")])
    async with serving(script) as base:
        c = client()
        async with c.get(URL(base + "/a")) as r:
            assert await r.content.read(10) == b"a"
            await c.close()
        await settle(script, 1)
        assert script.closed == [1]
