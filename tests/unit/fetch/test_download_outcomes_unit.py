"""fetch/download.py, answer by answer: what each status, redirect, body and store failure becomes.

Each case is one Downloader over a real socket, writing a real DiskStore: a small scripted aiohttp server
on 127.0.0.1 answers what the simulator cannot be told to (a 408, a 308 to a relative Location, a chain
of redirects, a body of an exact size), and the simulator's own faults cut bodies short and stall them.
Checked through what the crawl sees: the `Fetched` result (status, reason, error text), the requests the
server received, the downloader's counters, and the files left on disk.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import crawl_config

from crawler.fetch.download import Downloader
from crawler.fetch.result import Fetched
from crawler.net.sessions import open_net
from crawler.simulator import FaultConfig
from crawler.store import layout
from crawler.store.disk import DiskStore, LinkUnsupported
from crawler.store.errors import DiskFull, StoreUnavailable

pytestmark = pytest.mark.timeout(60)

KEY = 4242
IMG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 16  # 4100 bytes
JPEG = {"Content-Type": "image/jpeg"}
Answer = tuple[int, dict[str, str], bytes] | Callable[[web.Request], Any]


class _Origin:
    """Answers each path from its script, one answer per request, the last one repeated; records what is asked."""

    def __init__(self) -> None:
        self.script: dict[str, list[Answer]] = {}
        self.asked: list[str] = []
        self.base = ""
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.asked.append(request.path)
        answers = self.script.get(request.path)
        if not answers:
            return web.Response(status=404, text="Not Found")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if callable(answer):
            return await answer(request)
        status, headers, body = answer
        return web.Response(status=status, headers=headers, body=body)


@asynccontextmanager
async def _serving() -> AsyncIterator[_Origin]:
    origin = _Origin()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", origin.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    origin.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    origin.base = f"http://127.0.0.1:{origin.port}"
    try:
        yield origin
    finally:
        await runner.cleanup()


@asynccontextmanager
async def _downloader(base: str, root: Path, store: DiskStore | None = None,
                      on_pause: Callable[[float], None] | None = None, **flags: Any) -> AsyncIterator[Downloader]:
    cfg = crawl_config(root, base + "/api/v1", **{"retries": 1, **flags})
    store = store or DiskStore(root)
    await store.clear_leftovers()
    try:
        async with open_net(cfg, api=False, cdn=True) as net:
            yield Downloader.from_config(cfg, net, store, random.Random(1), on_pause=on_pause)
    finally:
        await store.close()


async def _outcome(base: str, root: Path, url: str, listed: str | None = None, video: bool = False,
                   **kw: Any) -> tuple[Fetched, Downloader]:
    async with _downloader(base, root, **kw) as d:
        result = await asyncio.wait_for(d.outcome(KEY, url, listed, video), 10)
    return result, d


def _images(root: Path) -> list[Path]:
    return [p for p in (root / "images").rglob("*") if p.is_file()] if (root / "images").exists() else []


def _chunked(body: bytes, pieces: int = 4) -> Callable[[web.Request], Any]:
    """A 200 image/jpeg with no Content-Length, its body in `pieces` writes."""
    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers=JPEG)
        response.enable_chunked_encoding()
        await response.prepare(request)
        step = -(-len(body) // pieces)
        for i in range(0, len(body), step):
            await response.write(body[i:i + step])
        await response.write_eof()
        return response
    return answer


# status, headers, body, flags -> (status, reason, error, requests). retries=1: a retryable answer is asked twice.
STATUS_TABLE = [
    (404, {}, b"", {}, ("gone", None, "http-404", 1)),
    (410, {}, b"", {}, ("gone", None, "http-410", 1)),
    (408, {}, b"", {}, ("failed", "http-408", "http-408: after 2 tries", 2)),
    (500, {}, b"", {}, ("failed", "http-500", "http-500: after 2 tries", 2)),
    (501, {}, b"", {}, ("failed", "http-501", "http-501: after 2 tries", 2)),
    (599, {}, b"", {}, ("failed", "http-599", "http-599: after 2 tries", 2)),
    (201, JPEG, IMG, {}, ("failed", "http-201", "http-201", 1)),
    (403, {}, b"", {}, ("failed", "http-403", "http-403", 1)),
    (409, {}, b"", {}, ("failed", "http-409", "http-409", 1)),
    (430, {}, b"", {}, ("failed", "http-430", "http-430", 1)),
    (499, {}, b"", {}, ("failed", "http-499", "http-499", 1)),
    (200, {"Content-Type": "text/html; charset=utf-8"}, b"<html>hi</html>", {},
     ("failed", "not-media", "not-media: Content-Type text/html (after 2 tries)", 2)),
    (200, JPEG, IMG, {"max_bytes": len(IMG) - 1},
     ("failed", "too-large", f"too-large: {len(IMG)} bytes is over --max-bytes {len(IMG) - 1}", 1)),
    (200, JPEG, IMG, {"max_bytes": len(IMG)}, ("done", None, None, 1)),  # exactly the cap is allowed
]


@pytest.mark.parametrize(("status", "headers", "body", "flags", "want"), STATUS_TABLE,
                         ids=[f"{r[0]}-{r[4][1] or r[4][0]}-{i}" for i, r in enumerate(STATUS_TABLE)])
async def test_each_status_becomes_its_outcome(tmp_path, status, headers, body, flags, want):
    async with _serving() as origin:
        origin.script["/a.jpeg"] = [(status, headers, body)]
        result, d = await _outcome(origin.base, tmp_path, origin.base + "/a.jpeg", **flags)
    assert (result.status, result.reason, result.error, len(origin.asked)) == want, result
    assert d.counters.requests == want[3] and dict(d.counters.statuses) == {status: want[3]}
    if result.status == "done":
        assert (tmp_path / str(result.path)).read_bytes() == IMG and result.bytes == len(IMG)
        assert d.counters.bytes == len(IMG)
    else:
        assert _images(tmp_path) == [] and d.counters.bytes == 0


async def test_a_429_pauses_the_host_for_its_retry_after_and_tells_on_pause(tmp_path):
    async with _serving() as origin:
        origin.script["/a.jpeg"] = [(429, {"Retry-After": "0.2"}, b""), (200, JPEG, IMG)]
        pauses: list[float] = []
        started = time.monotonic()
        result, d = await _outcome(origin.base, tmp_path, origin.base + "/a.jpeg", on_pause=pauses.append)
        took = time.monotonic() - started
    assert result.status == "done", result
    assert pauses == [0.2]
    assert took >= 0.2  # the gate held the second request back
    assert (d.counters.throttled, d.counters.retries, d.counters.requests) == (1, 0, 2)
    assert dict(d.counters.statuses) == {429: 1, 200: 1}


@pytest.mark.parametrize(("headers", "at_least", "at_most"), [({"Retry-After": "0.3"}, 0.3, 5.0), ({}, 0.0, 0.25)])
async def test_a_5xx_retry_waits_at_least_its_retry_after(tmp_path, headers, at_least, at_most):
    async with _serving() as origin:
        origin.script["/a.jpeg"] = [(503, headers, b""), (200, JPEG, IMG)]
        pauses: list[float] = []
        started = time.monotonic()
        result, d = await _outcome(origin.base, tmp_path, origin.base + "/a.jpeg", on_pause=pauses.append)
        took = time.monotonic() - started
    assert result.status == "done", result
    assert at_least <= took < at_most, took
    assert pauses == [] and (d.counters.throttled, d.counters.retries) == (0, 1)


# Location (formatted with the origin's base and port) -> (status, reason, error, paths asked).
REDIRECTS = [
    *[(code, "/b.jpeg", ("done", None, None, ["/a.jpeg", "/b.jpeg"])) for code in (301, 302, 303, 307, 308)],
    (302, "{base}/b.jpeg", ("done", None, None, ["/a.jpeg", "/b.jpeg"])),
    (302, "b.jpeg", ("done", None, None, ["/a.jpeg", "/b.jpeg"])),
    (302, "http://evil.invalid/b.jpeg",
     ("failed", "refused-redirect", "refused-redirect: redirect to host evil.invalid is not allowed", ["/a.jpeg"])),
    (307, "http://localhost:{port}/b.jpeg",
     ("failed", "refused-redirect", "refused-redirect: redirect to host localhost is not allowed", ["/a.jpeg"])),
    (302, "data:image/jpeg;base64,/9j/4AAQ",
     ("failed", "refused-redirect", "refused-redirect: redirect to host ? is not allowed", ["/a.jpeg"])),
    (302, None, ("failed", "redirect-loop", "redirect-loop: more than 5 redirects", ["/a.jpeg"] * 6)),
]


@pytest.mark.parametrize(("code", "location", "want"), REDIRECTS, ids=[f"{r[0]}-{i}" for i, r in enumerate(REDIRECTS)])
async def test_redirects_are_followed_by_hand_only_within_the_allow_list(tmp_path, code, location, want):
    async with _serving() as origin:
        headers = {} if location is None else {"Location": location.format(base=origin.base, port=origin.port)}
        origin.script["/a.jpeg"] = [(code, headers, b"")]
        origin.script["/b.jpeg"] = [(200, JPEG, IMG)]
        result, d = await _outcome(origin.base, tmp_path, origin.base + "/a.jpeg")
    assert (result.status, result.reason, result.error, origin.asked) == want, result
    assert d.counters.requests == len(want[3])
    if result.status == "done":
        assert dict(d.counters.statuses) == {code: 1, 200: 1}  # each hop is our own request
        assert (tmp_path / str(result.path)).read_bytes() == IMG
    else:
        assert dict(d.counters.statuses) == {code: len(want[3])} and _images(tmp_path) == []


@pytest.mark.parametrize(("hops", "want"), [(5, "done"), (6, "failed")])
async def test_five_redirects_are_followed_and_a_sixth_is_a_loop(tmp_path, hops, want):
    async with _serving() as origin:
        for i in range(hops):
            origin.script[f"/c{i}.jpeg"] = [(302, {"Location": f"/c{i + 1}.jpeg"}, b"")]
        origin.script[f"/c{hops}.jpeg"] = [(200, JPEG, IMG)]
        result, _ = await _outcome(origin.base, tmp_path, origin.base + "/c0.jpeg")
    assert result.status == want, result
    assert origin.asked == [f"/c{i}.jpeg" for i in range(6)]
    if want == "failed":
        assert (result.reason, result.error) == ("redirect-loop", "redirect-loop: more than 5 redirects")


@pytest.mark.parametrize(("url", "host"), [("http://example.invalid/a.jpeg", "example.invalid"),
                                           ("http://[::1/a.jpeg", "?"), ("ftp://127.0.0.1/a.jpeg", "127.0.0.1")])
async def test_a_refused_host_is_named_in_the_error(tmp_path, url, host):
    async with _serving() as origin:
        result, _ = await _outcome(origin.base, tmp_path, url)
    assert (result.status, result.reason) == ("failed", "refused-host"), result
    assert result.error == f"refused-host: host {host} is not allowed (see --allow-host)"
    assert origin.asked == []


class _BrokenSink:
    def __init__(self, inner: Any, store: _BrokenStore) -> None:
        self._inner, self._store = inner, store

    async def write(self, chunk: bytes) -> None:
        if self._store.where == "write":
            raise self._store.error
        await self._inner.write(chunk)

    async def commit(self) -> None:
        if self._store.where == "commit":
            raise self._store.error
        await self._inner.commit()

    async def abort(self) -> None:
        await self._inner.abort()


class _BrokenStore(DiskStore):
    """A DiskStore whose sinks fail at one step (`where`: sink, write, commit, or never) with `error`."""

    def __init__(self, root: Path, where: str = "never", error: BaseException | None = None) -> None:
        super().__init__(root)
        self.where, self.error = where, error
        self.sinks: list[tuple[str, str]] = []

    def sink(self, rel_path: str, content_type: str) -> Any:
        self.sinks.append((rel_path, content_type))
        if self.where == "sink":
            raise self.error  # type: ignore[misc]
        return _BrokenSink(super().sink(rel_path, content_type), self)


DISK_FULL = "no space left on the disk of {url}"
# where, error -> (status, reason, error, requests)
STORE_FAILURES = [
    ("write", OSError(errno.ENOSPC, "No space left on device"), ("disk-full", None, DISK_FULL, 1)),
    ("sink", OSError(errno.EDQUOT, "Disk quota exceeded"), ("disk-full", None, DISK_FULL, 1)),
    ("write", OSError(errno.EIO, "Input/output error"), ("disk-error", None, "Input/output error", 1)),
    ("commit", OSError("no errno at all"), ("disk-error", None, "no errno at all", 1)),
    ("write", DiskFull("bucket quota reached"), ("disk-full", None, "bucket quota reached", 1)),
    ("commit", LinkUnsupported("EXDEV"),
     ("failed", "link-unsupported", "link-unsupported: cannot link an O_TMPFILE file (EXDEV) (after 2 tries)", 2)),
    ("write", StoreUnavailable("s" * 300), ("failed", "store", "store: " + "s" * 200 + " (after 2 tries)", 2)),
]


@pytest.mark.parametrize(("where", "error", "want"), STORE_FAILURES, ids=[f"{r[0]}-{r[2][1] or r[2][0]}-{i}"
                                                                          for i, r in enumerate(STORE_FAILURES)])
async def test_a_store_failure_becomes_its_outcome_and_leaves_no_file(tmp_path, where, error, want):
    store = _BrokenStore(tmp_path, where, error)
    async with _serving() as origin:
        origin.script["/a.jpeg"] = [(200, JPEG, IMG)]
        result, d = await _outcome(origin.base, tmp_path, origin.base + "/a.jpeg", store=store)
    status, reason, text, requests = want
    assert (result.status, result.reason, result.error) == (status, reason, text.format(url=store.url)), result
    assert len(origin.asked) == requests and d.counters.bytes == 0
    assert _images(tmp_path) == []


async def test_bodies_are_counted_hashed_and_stored_under_their_type(tmp_path):
    """A body bigger than one read, with a Content-Length; a chunked one of exactly --max-bytes; one over it."""
    big = bytes(random.Random(7).randbytes(600_000))
    store = _BrokenStore(tmp_path)
    async with _serving() as origin:
        origin.script["/big.jpeg"] = [(200, JPEG, big)]
        origin.script["/chunked.jpeg"] = [_chunked(IMG)]
        origin.script["/over.jpeg"] = [_chunked(IMG + b"!")]
        async with _downloader(origin.base, tmp_path, store=store, max_bytes=len(big)) as d:
            first = await d.outcome(KEY, origin.base + "/big.jpeg")
            d.max_bytes = len(IMG)
            second = await d.outcome(KEY + 1, origin.base + "/chunked.jpeg")
            over = await d.outcome(KEY + 2, origin.base + "/over.jpeg")
    for key, result, body in ((KEY, first, big), (KEY + 1, second, IMG)):
        assert result.status == "done", result
        assert result.path == layout.relative_path(key, "image/jpeg") and result.content_type == "image/jpeg"
        assert (result.bytes, result.sha256) == (len(body), hashlib.sha256(body).hexdigest())
        assert (tmp_path / result.path).read_bytes() == body
    assert (over.status, over.reason, over.error) == ("failed", "too-large", f"too-large: body passed --max-bytes {len(IMG)}")
    assert store.sinks[:2] == [(first.path, "image/jpeg"), (second.path, "image/jpeg")]
    assert d.counters.bytes == len(big) + len(IMG)  # what was stored, not what was refused
    assert (d.counters.requests, dict(d.counters.statuses)) == (3, {200: 3})
    assert len(_images(tmp_path)) == 2


async def test_max_rate_paces_the_body(tmp_path):
    # --max-rate 8192: reads of 512 bytes, each paid for before the next: 4100 bytes take about 0.45 s.
    async with _serving() as origin:
        origin.script["/a.jpeg"] = [(200, JPEG, IMG)]
        started = time.monotonic()
        result, _ = await _outcome(origin.base, tmp_path, origin.base + "/a.jpeg", max_rate=8192)
        took = time.monotonic() - started
    assert result.status == "done" and result.bytes == len(IMG), result
    assert 0.3 <= took < 3, took


async def test_max_rate_reads_one_paid_chunk_at_a_time_so_an_oversized_body_stops_early(tmp_path):
    # A big read would have to be paid for in full (seconds at 8192 B/s) before the size cap is even checked.
    async with _serving() as origin:
        origin.script["/a.jpeg"] = [_chunked(IMG * 64, pieces=1)]
        started = time.monotonic()
        result, _ = await _outcome(origin.base, tmp_path, origin.base + "/a.jpeg", max_rate=8192, max_bytes=1024)
        took = time.monotonic() - started
    assert (result.status, result.reason) == ("failed", "too-large"), result
    assert took < 1.5, took


async def test_a_video_answered_as_a_still_names_the_type_also_at_the_listed_url(tmp_path):
    async with _serving() as origin:
        origin.script["/sized.mp4"] = [(404, {}, b"")]
        origin.script["/listed.mp4"] = [(200, {"Content-Type": "image/webp"}, b"RIFF....WEBPVP8 ")]
        direct, _ = await _outcome(origin.base, tmp_path / "a", origin.base + "/listed.mp4", video=True)
        fallback, _ = await _outcome(origin.base, tmp_path / "b", origin.base + "/sized.mp4",
                                     listed=origin.base + "/listed.mp4", video=True)
    for result in (direct, fallback):
        assert (result.status, result.reason, result.error) == (
            "failed", "video-as-still", "video-as-still: a video answered as image/webp; try --video-original"), result
    assert origin.asked == ["/listed.mp4", "/sized.mp4", "/listed.mp4"]
    assert _images(tmp_path / "a") == [] and _images(tmp_path / "b") == []


async def test_from_config_needs_the_cdn_side_of_the_net(tmp_path):
    cfg = crawl_config(tmp_path, "http://127.0.0.1:9/api/v1")
    async with open_net(cfg, api=True, cdn=False) as net:
        with pytest.raises(AssertionError, match=r"^open_net\(cfg, cdn=True\)$"):
            Downloader.from_config(cfg, net, DiskStore(tmp_path), random.Random(1))


# --- the network failing: simulator faults, a closed port, a port that never accepts ---

async def _sim_outcome(sim, root: Path, **flags: Any) -> tuple[Fetched, Downloader]:  # type: ignore[no-untyped-def]
    item = next(i for i in sim.catalogue.items if i["id"] in sim.catalogue.expected())
    return await _outcome(sim.api_base.removesuffix("/api/v1"), root, sim.origin + item["url"], **flags)


async def test_a_truncated_body_says_how_much_came(sim_factory, tmp_path):
    async with sim_factory(images=5, seed=5, faults=FaultConfig(cdn_truncate=1.0)) as sim:
        result, d = await _sim_outcome(sim, tmp_path, retries=0)
    assert (result.status, result.reason, result.error) == (
        "failed", "truncated", "truncated: received 2222 of 4444 bytes, then the connection closed (after 1 try)")
    assert dict(d.counters.statuses) == {200: 1} and d.counters.bytes == 0


async def test_a_reset_body_says_it_was_reset(sim_factory, tmp_path):
    async with sim_factory(images=5, seed=5, faults=FaultConfig(cdn_reset=1.0)) as sim:
        result, _ = await _sim_outcome(sim, tmp_path, retries=0)
    assert (result.status, result.reason, result.error) == (
        "failed", "truncated", "truncated: received 2222 of 4444 bytes, then the connection was reset (after 1 try)")


async def test_a_stalled_body_says_how_long_it_waited(sim_factory, tmp_path):
    async with sim_factory(images=5, seed=3, faults=FaultConfig(cdn_stall=1.0, stall_seconds=20)) as sim:
        result, _ = await _sim_outcome(sim, tmp_path, retries=0, timeout=0.3)
    assert (result.status, result.reason, result.error) == ("failed", "stalled", "stalled: no byte for 0.3s (after 1 try)")


async def test_a_closed_port_is_a_connection_failure_counted_as_status_0(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connecting is refused
        url = f"http://127.0.0.1:{port}/a.jpeg?token=secret"
        result, d = await _outcome(f"http://127.0.0.1:{port}", tmp_path, url)
    assert (result.status, result.reason) == ("failed", "connection"), result
    assert result.error == (f"connection: cannot connect to 127.0.0.1:{port}: connection refused: nothing listens on "
                            f"that port for GET http://127.0.0.1:{port}/a.jpeg?token=REDACTED (after 2 tries)")
    assert (d.counters.requests, dict(d.counters.statuses)) == (2, {0: 2})


async def test_a_connection_never_accepted_is_stalled_after_the_timeout(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = [socket.socket() for _ in range(3)]  # fill the backlog: further SYNs are dropped
    try:
        for f in fillers:
            f.setblocking(False)
            try:
                f.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
        await asyncio.sleep(0.05)
        cfg = crawl_config(tmp_path, f"http://127.0.0.1:{port}/api/v1", retries=0, timeout=0.3)
        store = DiskStore(tmp_path)
        try:
            async with open_net(cfg, api=False, cdn=True) as net:
                # The session gives up connecting after --timeout (0.3 s); the stall watch is given longer here,
                # so that it is the connect timeout, not a stall noticed in the same instant, that ends the try.
                d = Downloader(net.cdn, net.cdn_gate, net.policy, store, cfg.allowed_hosts,  # type: ignore[arg-type]
                               cfg.max_bytes, 5.0, random.Random(1))
                result = await asyncio.wait_for(d.outcome(KEY, f"http://127.0.0.1:{port}/a.jpeg"), 10)
        finally:
            await store.close()
    finally:
        for f in fillers:
            f.close()
        server.close()
    assert (result.status, result.reason, result.error) == ("failed", "stalled", "stalled: no connection in 5s (after 1 try)")
    assert dict(d.counters.statuses) == {}  # no answer, and not counted as a connection error either
