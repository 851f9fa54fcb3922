"""Fetch one image URL into the mirror's store: stream it into a sink, check it, then commit it.

Knows nothing of CivitAI's API or the manifest. An image appears at its final path (or key) only
complete and checked (status, media type, Content-Length, size cap): the store's sink keeps it
nameless until `commit()` (O_TMPFILE + link on disk, `disk_store.py`; one PUT or a multipart upload
completed only then on an object store, `store.py`), so kill -9 can never leave half an image there.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import random
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urljoin

import aiohttp

from crawler.store import layout
from crawler import urls
from crawler.net.limits import HostGate
from crawler.store.errors import DiskFull
from crawler.keys import Key
from crawler.net.retry import Fatal, Gone, RequestCounters, RequestFailed, RetryPolicy, Retryable, attempts, parse_retry_after
from crawler.store.disk import LinkUnsupported
from crawler.store.errors import StoreUnavailable

Store = Any  # DiskStore or store.RemoteStore: the same sink/commit/abort contract
_CHUNK = 256 * 1024
_MAX_REDIRECTS = 5


@dataclass(frozen=True, slots=True)
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

    def __init__(self, session: aiohttp.ClientSession, gate: HostGate, policy: RetryPolicy, store: Store,
                 allowed_hosts: frozenset[str], max_bytes: int, user_agent: str, rng: random.Random,
                 on_pause: Callable[[float], None] | None = None) -> None:
        """`on_pause(seconds)`: told of every 429 pause, so that other pools (Ray actors) pause too."""
        self.session = session
        self.on_pause = on_pause
        self.gate = gate
        self.policy = policy
        self.store = store
        self.allowed_hosts = allowed_hosts
        self.max_bytes = max_bytes
        self.headers = {"User-Agent": user_agent, "Accept": "image/*,video/*;q=0.9,*/*;q=0.1"}
        self.rng = rng
        self.counters = DownloadCounters()

    async def outcome(self, key: Key, url: str) -> dict[str, Any]:
        """The result of fetching one image as a small record: what the manifest needs, nothing more.

        `status` is done, failed or gone; a disk that is full or refuses writes is not an image's
        failure but the crawl's, so it comes back as `disk-full` / `disk-error` for the crawl to stop on.
        The same records travel back from Ray download actors, so both executors settle them alike.
        """
        try:
            saved = await self.fetch(key, url)
        except Gone as e:
            return {"status": "gone", "error": e.reason}
        except RequestFailed as e:
            return {"status": "failed", "reason": e.reason, "error": str(e)}
        except DiskFull as e:
            return {"status": "disk-full", "error": e.strerror or str(e)}
        except OSError as e:
            return {"status": "disk-error", "error": e.strerror or str(e)}
        return {"status": "done", "path": saved.path, "sha256": saved.sha256, "bytes": saved.bytes,
                "content_type": saved.content_type}

    async def fetch(self, key: Key, url: str) -> Saved:
        if not urls.is_allowed(url, self.allowed_hosts):
            raise Fatal("refused-host", f"host {urls.host_of(url) or '?'} is not allowed (see --allow-host)")
        return await attempts(lambda: self._attempt(key, url), self.policy, self.rng,
                              pause_host=self._pause, on_retry=self.counters.count_retry)

    def _pause(self, seconds: float) -> None:
        self.gate.pause(seconds)
        if self.on_pause is not None:
            self.on_pause(seconds)

    async def _attempt(self, key: Key, url: str) -> Saved:
        for _ in range(_MAX_REDIRECTS + 1):
            await self.gate.acquire()
            self.counters.requests += 1
            try:
                async with self.session.get(url, headers=self.headers, allow_redirects=False) as response:
                    self.counters.statuses[response.status] += 1
                    if response.status in (301, 302, 303, 307, 308):
                        url = self._redirect_target(url, response)
                        continue
                    self._check_status(response)
                    return await self._save(key, response)
            except aiohttp.ClientPayloadError as e:
                raise Retryable("truncated", str(e)[:200]) from None
            except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
                raise Retryable("stalled", f"no byte for {self.session.timeout.sock_read}s") from None
            except aiohttp.ClientError as e:
                self.counters.statuses[0] += 1
                raise Retryable("connection", type(e).__name__) from None
        raise Fatal("redirect-loop", f"more than {_MAX_REDIRECTS} redirects")

    def _redirect_target(self, url: str, response: aiohttp.ClientResponse) -> str:
        target = urljoin(url, response.headers.get("Location", ""))
        if not urls.is_allowed(target, self.allowed_hosts):
            raise Fatal("refused-redirect", f"redirect to host {urls.host_of(target) or '?'} is not allowed")
        return target

    def _check_status(self, response: aiohttp.ClientResponse) -> None:
        status = response.status
        if status == 200:
            if not layout.is_media(response.content_type):
                # A 200 HTML page is a CDN or proxy error page, often transient.
                raise Retryable("not-media", f"Content-Type {layout.media_type(response.content_type) or 'missing'}")
            length = response.content_length
            if length is not None and length > self.max_bytes:
                raise Fatal("too-large", f"{length} bytes is over --max-bytes {self.max_bytes}")
            return
        if status in (404, 410):
            raise Gone(f"http-{status}")
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status == 429 or status == 408 or status >= 500:
            raise Retryable(f"http-{status}", retry_after=retry_after)
        raise Fatal(f"http-{status}")

    async def _save(self, key: Key, response: aiohttp.ClientResponse) -> Saved:
        content_type = layout.media_type(response.content_type)
        final_rel = layout.relative_path(key, content_type)
        digest = hashlib.sha256()
        total = 0
        committed = False
        sink = None
        try:
            sink = self.store.sink(final_rel, content_type)
            async for chunk in response.content.iter_chunked(_CHUNK):
                total += len(chunk)
                if total > self.max_bytes:
                    raise Fatal("too-large", f"body passed --max-bytes {self.max_bytes}")
                digest.update(chunk)
                await sink.write(chunk)
            expected = response.content_length
            if expected is not None and total != expected:
                raise Retryable("truncated", f"{total} of {expected} bytes")
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

