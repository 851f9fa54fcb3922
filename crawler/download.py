"""Fetch one image URL into the mirror: stream to a nameless file, check it, then give it its final name.

Knows nothing of CivitAI's API or the manifest. A file appears at its final path only complete and
checked (status, media type, Content-Length, size cap), so kill -9 can never leave half an image
there. The file is created with O_TMPFILE in its final folder and linked into place when complete
(nothing to clean up after a crash, no rename); where the filesystem has no O_TMPFILE, a named
`.partial/{key}.part` is renamed instead.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import aiohttp

from . import layout, urls
from .limits import HostGate
from .manifest import DiskFull, Key
from .retry import Fatal, Gone, RequestCounters, RetryPolicy, Retryable, attempts, parse_retry_after

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
class DownloadCounters(RequestCounters):
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
        self._root = str(root)
        self._made_dirs: set[str] = set()
        self._tmpfile = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")
        self._dir_fd = -1

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
                              pause_host=self.gate.pause, on_retry=self.counters.count_retry)

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
        folder = layout.shard_dir(key)
        final_rel = f"{folder}/{layout.file_name(key, content_type)}"
        target_dir = f"{self._root}/{folder}"
        final = f"{self._root}/{final_rel}"
        digest = hashlib.sha256()
        total = 0
        fd = -1
        part: str | None = None  # a named .part file, only where anonymous files are not supported
        placed = False
        try:
            if target_dir not in self._made_dirs:
                os.makedirs(target_dir, exist_ok=True)
                self._made_dirs.add(target_dir)
            fd, part = self._open_unnamed(target_dir, key)
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
            self._place(fd, part, final)
            placed = True
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(e.errno, f"no space left on the disk of {self.root}") from None
            raise
        finally:
            if fd >= 0:
                os.close(fd)
            if part is not None and not placed:
                try:
                    os.unlink(part)
                except FileNotFoundError:
                    pass
        self.counters.bytes += total
        return Saved(path=final_rel, sha256=digest.hexdigest(), bytes=total, content_type=content_type)

    def _open_unnamed(self, folder: str, key: Key) -> tuple[int, str | None]:
        """An anonymous file in `folder` (O_TMPFILE): it has no name until it is complete, so a crash
        leaves nothing behind and no rename is needed. Else a named file in .partial/."""
        if self._tmpfile:
            try:
                return os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o644), None
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                    raise
                self._tmpfile = False  # this filesystem has none: use named .part files from now on
        part = f"{self._root}/{PARTIAL_DIR}/{key}{layout.PART_SUFFIX}"
        return os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), part

    def _place(self, fd: int, part: str | None, final: str) -> None:
        """Give the complete file its final name in one step."""
        if part is not None:
            os.replace(part, final)
            return
        source = f"/proc/self/fd/{fd}"
        # Passing a dir fd makes os.link call linkat(..., AT_SYMLINK_FOLLOW), which names the open
        # anonymous file; plain link() would try to link the /proc symlink itself.
        if self._dir_fd < 0:
            self._dir_fd = os.open(self._root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            try:
                os.link(source, final, src_dir_fd=self._dir_fd, follow_symlinks=True)
            except FileExistsError:
                # A leftover of a download that was never recorded (the key is not done, or we would
                # not be fetching it): it is replaced, never a recorded file.
                os.unlink(final)
                os.link(source, final, src_dir_fd=self._dir_fd, follow_symlinks=True)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.ENOENT, errno.EOPNOTSUPP, errno.EACCES):
                raise
            self._tmpfile = False  # no way to name an anonymous file here: named .part files from now on
            raise Retryable("link-unsupported", f"cannot link an O_TMPFILE file ({e.strerror})") from None

    def close(self) -> None:
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1
