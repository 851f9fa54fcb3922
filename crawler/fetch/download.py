"""Fetch one image URL into the mirror's store: stream it into a sink, check it, then commit it.

Knows nothing of CivitAI's API or the manifest. An image appears at its final path (or key) only
complete and checked (status, media type, size cap; a body shorter than its Content-Length is
`Truncated` by the CDN client, `net.cdn.framing`): the store's sink keeps it
nameless until `commit()` (O_TMPFILE + link on disk, `disk_store.py`; one PUT or a multipart upload
completed only then on an object store, `store.py`), so kill -9 can never leave half an image there.
"""

from __future__ import annotations

import errno
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin

from yarl import URL

from crawler import urls
from crawler.config.settings import CrawlConfig
from crawler.fetch.result import Fetched
from crawler.keys import Key
from crawler.net.cdn.client import CdnClient
from crawler.net.cdn.errors import ClientError, Truncated
from crawler.net.cdn.framing import Response
from crawler.net.errors import connection_detail
from crawler.net.limits import ByteGate, HostGate
from crawler.net.retry import Fatal, Gone, RequestCounters, RequestFailed, Retryable, RetryPolicy, attempts, parse_retry_after
from crawler.net.sessions import Net
from crawler.net.stalls import Stalled, Stalls, Watch
from crawler.store import layout
from crawler.store.base import Store
from crawler.store.disk import LinkUnsupported
from crawler.store.errors import DiskFull, StoreUnavailable

_CHUNK = 256 * 1024
_MAX_REDIRECTS = 5


# Not frozen, like `Job` and `Fetched`: one per image, never changed once made.
@dataclass(slots=True)
class Saved:
    path: str  # relative to the mirror root
    sha256: str
    bytes: int
    content_type: str


@dataclass(slots=True)
class DownloadCounters(RequestCounters):
    bytes: int = 0


class Downloader:
    """One per crawl (or per Ray download actor): the CDN session, its gate, the retry policy and the store."""

    def __init__(self, session: CdnClient, gate: HostGate, policy: RetryPolicy, store: Store,
                 allowed_hosts: frozenset[str], max_bytes: int, timeout: float, rng: random.Random,
                 on_pause: Callable[[float], None] | None = None, bandwidth: ByteGate | None = None) -> None:
        """`session`: the CDN's client (`net.sessions.cdn_client`), which sends the request headers itself.
        `timeout`: an attempt that waits this long for a byte (headers or body) is retried as `stalled`
        (`net.stalls`; the client bounds only connecting). Built on the running loop.
        `on_pause(seconds)`: told of every 429 pause, so that other pools (Ray actors) pause too.
        `bandwidth`: --max-rate, paid for each chunk before it is used (reads are then one chunk of it)."""
        self.session = session
        self.bandwidth = bandwidth
        self.chunk = _CHUNK if bandwidth is None else bandwidth.chunk
        self.on_pause = on_pause
        self.gate = gate
        self.policy = policy
        self.store = store
        self.allowed_hosts = allowed_hosts
        self.max_bytes = max_bytes
        self.rng = rng
        self.counters = DownloadCounters()
        self.stalls = Stalls(timeout)

    @classmethod
    def from_config(cls, cfg: CrawlConfig, net: Net, store: Store, rng: random.Random,
                    on_pause: Callable[[float], None] | None = None) -> Downloader:
        """The crawl's downloader over `net`'s CDN session and gate: local workers and Ray actors build it here."""
        assert net.cdn is not None and net.cdn_gate is not None, "open_net(cfg, cdn=True)"
        return cls(net.cdn, net.cdn_gate, net.policy, store, cfg.allowed_hosts, cfg.max_bytes, cfg.timeout, rng,
                   on_pause=on_pause, bandwidth=net.bandwidth)

    async def outcome(self, key: Key, url: str, listed: str | None = None, video: bool = False) -> Fetched:
        """The result of fetching one image: what the manifest needs, nothing more.

        `listed`: the URL as the API listed it, when `url` is our size rewrite of it: a 404/410 there
        is retried as listed before the image is called gone (the rewrite may be what the CDN refused).
        `video`: the item is a video, so a still image answered for it is failed `video-as-still`
        (nothing is stored; a later run retries), never done.

        `status` is done, failed or gone; a disk that is full or refuses writes is not an image's
        failure but the crawl's, so it comes back as `disk-full` / `disk-error` for the crawl to stop on.
        The same values travel back from Ray download actors, so both executors settle them alike.
        """
        try:
            try:
                saved = await self.fetch(key, url, video)
            except Gone:
                if listed is None or listed == url:
                    raise
                saved = await self.fetch(key, listed, video)
        except Gone as e:
            return Fetched("gone", error=e.reason)
        except RequestFailed as e:
            return Fetched("failed", reason=e.reason, error=str(e))
        except DiskFull as e:
            return Fetched("disk-full", error=e.strerror or str(e))
        except OSError as e:
            return Fetched("disk-error", error=e.strerror or str(e))
        return Fetched("done", path=saved.path, sha256=saved.sha256, bytes=saved.bytes,
                       content_type=saved.content_type)

    async def fetch(self, key: Key, url: str, video: bool = False) -> Saved:
        try:
            parsed: URL | None = URL(url)  # once: the allow-list judges, and the client requests, this very URL
        except (ValueError, TypeError):
            parsed = None
        if parsed is None or not urls.is_allowed(parsed, self.allowed_hosts):
            raise Fatal("refused-host", f"host {urls.host_of(url) or '?'} is not allowed (see --allow-host)")
        target = parsed
        return await attempts(lambda: self._attempt(key, target, video), self.policy, self.rng,
                              pause_host=self._pause, on_retry=self.counters.count_retry)

    def _pause(self, seconds: float) -> None:
        self.gate.pause(seconds)
        if self.on_pause is not None:
            self.on_pause(seconds)

    async def _attempt(self, key: Key, url: URL, video: bool) -> Saved:
        for _ in range(_MAX_REDIRECTS + 1):
            await self.gate.acquire()
            self.counters.requests += 1
            try:
                with self.stalls.watch() as watch:
                    watch.waiting()
                    async with self.session.get(url) as response:
                        watch.idle()
                        self.counters.statuses[response.status] += 1
                        if response.status in (301, 302, 303, 307, 308):
                            url = self._redirect_target(url, response)
                            continue
                        content_type = layout.media_type(response.headers.get("content-type"))
                        self._check_status(response, content_type)
                        if video and content_type.startswith("image/"):
                            # Users' one-frame webps: a size transform answered a video with a still.
                            raise Fatal("video-as-still", f"a video answered as {content_type}; try --video-original")
                        return await self._save(key, response, content_type, watch)
            except Stalled as e:
                raise Retryable("stalled", str(e)) from None
            except Truncated as e:
                raise Retryable("truncated", str(e)) from None
            except TimeoutError:  # connecting took longer than --timeout
                raise Retryable("stalled", f"no connection in {self.stalls.timeout:g}s") from None
            except ClientError as e:
                self.counters.statuses[0] += 1
                raise Retryable("connection", connection_detail(e, urls.redact(str(url)))) from None
        raise Fatal("redirect-loop", f"more than {_MAX_REDIRECTS} redirects")

    def _redirect_target(self, url: URL, response: Response) -> URL:
        target = urljoin(str(url), response.headers.get("location", ""))
        if not urls.is_allowed(target, self.allowed_hosts):
            raise Fatal("refused-redirect", f"redirect to host {urls.host_of(target) or '?'} is not allowed")
        return URL(target)

    def _check_status(self, response: Response, content_type: str) -> None:
        """Raise what a status other than 200, or a 200 we cannot keep, means."""
        status = response.status
        if status == 200:
            if not layout.is_media(content_type):
                # A 200 HTML page is a CDN or proxy error page, often transient.
                raise Retryable("not-media", f"Content-Type {content_type or 'missing'}")
            length = response.content_length
            if length is not None and length > self.max_bytes:
                raise Fatal("too-large", f"{length} bytes is over --max-bytes {self.max_bytes}")
            return
        if status in (404, 410):
            raise Gone(f"http-{status}")
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if status == 429 or status == 408 or status >= 500:
            raise Retryable(f"http-{status}", retry_after=retry_after)
        raise Fatal(f"http-{status}")

    async def _save(self, key: Key, response: Response, content_type: str, watch: Watch) -> Saved:
        final_rel = layout.relative_path(key, content_type)
        digest = hashlib.sha256()
        total = 0
        committed = False
        sink = None
        try:
            sink = self.store.sink(final_rel, content_type)
            bandwidth, content, size = self.bandwidth, response.content, self.chunk
            while True:
                watch.waiting()  # only while reading: a slow disk or upload is not the server stalling
                chunk = await content.read(size)
                watch.idle()
                if not chunk:
                    break
                if bandwidth is not None:
                    # Before the chunk is used and the next one read: the client stops reading the socket
                    # while its buffer is full, so the pace reaches the server too.
                    await bandwidth.acquire(len(chunk))
                total += len(chunk)
                if total > self.max_bytes:
                    raise Fatal("too-large", f"body passed --max-bytes {self.max_bytes}")
                digest.update(chunk)
                await sink.write(chunk)
            await sink.commit()
            committed = True
        except LinkUnsupported as e:
            raise Retryable("link-unsupported", f"cannot link an O_TMPFILE file ({e})") from None
        except StoreUnavailable as e:  # the object store failed an upload: like a network error, retried
            raise Retryable("store", str(e)[:200]) from None
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(e.errno, f"no space left on the disk of {self.store.url}") from None
            raise
        finally:
            if sink is not None and not committed:
                await sink.abort()
        self.counters.bytes += total
        return Saved(path=final_rel, sha256=digest.hexdigest(), bytes=total, content_type=content_type)

