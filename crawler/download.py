"""Fetch one image URL into the mirror: stream to a private `.part` file, check it, rename it into place.

Knows nothing of CivitAI's API or the manifest. A file appears at its final path only complete and
checked (status, media type, Content-Length, size cap), so kill -9 can never leave half an image there.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import aiohttp

from . import layout, urls
from .limits import HostGate
from .manifest import DiskFull, Key
from .retry import Fatal, Gone, RetryPolicy, Retryable, attempts, parse_retry_after

PARTIAL_DIR = ".partial"
_CHUNK = 256 * 1024
_MAX_REDIRECTS = 5


@dataclass(frozen=True, slots=True)
class Saved:
    path: str  # relative to the mirror root
    sha256: str
    bytes: int
    content_type: str


@dataclass(slots=True)
class DownloadCounters:
    statuses: Counter[int] = field(default_factory=Counter)  # answers by HTTP status (0: no answer)
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    bytes: int = 0


class Downloader:
    """One per crawl: the CDN session, its gate, the retry policy and the mirror root."""

    def __init__(self, session: aiohttp.ClientSession, gate: HostGate, policy: RetryPolicy, root: Path,
                 allowed_hosts: frozenset[str], max_bytes: int, user_agent: str, rng: random.Random) -> None:
        self.session = session
        self.gate = gate
        self.policy = policy
        self.root = root
        self.allowed_hosts = allowed_hosts
        self.max_bytes = max_bytes
        self.headers = {"User-Agent": user_agent, "Accept": "image/*,video/*;q=0.9,*/*;q=0.1"}
        self.rng = rng
        self.counters = DownloadCounters()
        self._partial = root / PARTIAL_DIR
        self._made_dirs: set[Path] = set()

    def clear_partials(self) -> int:
        """Remove leftovers of killed runs; only the lock holder calls this, so none is in use."""
        self._partial.mkdir(parents=True, exist_ok=True)
        removed = 0
        for entry in os.scandir(self._partial):
            if entry.is_file(follow_symlinks=False) or entry.is_symlink():
                os.unlink(entry.path)
                removed += 1
        return removed

    async def fetch(self, key: Key, url: str) -> Saved:
        if not urls.is_allowed(url, self.allowed_hosts):
            raise Fatal("refused-host", f"host {urls.host_of(url) or '?'} is not allowed (see --allow-host)")
        return await attempts(lambda: self._attempt(key, url), self.policy, self.rng,
                              pause_host=self.gate.pause, on_retry=self._count_retry)

    def _count_retry(self, error: Retryable, _wait: float) -> None:
        if error.reason == "http-429":
            self.counters.throttled += 1
        else:
            self.counters.retries += 1

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
        final_rel = layout.relative_path(key, response.content_type)
        part = self._partial / f"{key}{layout.PART_SUFFIX}"
        digest = hashlib.sha256()
        total = 0
        fd = -1
        renamed = False
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            async for chunk in response.content.iter_chunked(_CHUNK):
                total += len(chunk)
                if total > self.max_bytes:
                    raise Fatal("too-large", f"body passed --max-bytes {self.max_bytes}")
                digest.update(chunk)
                # Page-cache writes of one chunk take microseconds; a thread hop per chunk costs more.
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            expected = response.content_length
            if expected is not None and total != expected:
                raise Retryable("truncated", f"{total} of {expected} bytes")
            os.close(fd)
            fd = -1
            final = self.root / final_rel
            if final.parent not in self._made_dirs:
                final.parent.mkdir(parents=True, exist_ok=True)
                self._made_dirs.add(final.parent)
            os.replace(part, final)
            renamed = True
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(e.errno, f"no space left on the disk of {self.root}") from None
            raise
        finally:
            if fd >= 0:
                os.close(fd)
            if not renamed:
                try:
                    os.unlink(part)
                except FileNotFoundError:
                    pass
        self.counters.bytes += total
        return Saved(path=final_rel.as_posix(), sha256=digest.hexdigest(), bytes=total,
                     content_type=layout.media_type(response.content_type))
