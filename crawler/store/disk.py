"""Images on a local disk: a file appears at its final path only complete and checked.

    store = DiskStore(root)
    sink = store.sink("images/000/012/12345.jpeg", "image/jpeg")
    await sink.write(chunk) ...; await sink.commit()     # or await sink.abort()

The file is created with O_TMPFILE in its final folder and linked into place by `commit()`: nothing to
clean up after kill -9, no rename. Where the filesystem has no O_TMPFILE, a named `.partial/<name>.part`
is renamed instead (and removed by `clear_leftovers()` on the next start). The same `Sink` contract is
kept by `store.RemoteStore` for object stores (the contract: `crawler.store.base.Store`), so the
downloader never knows which one it writes to.

Whole-file reads off the hot path (`digest` for verify and the power-loss re-check, `read`) go through
aiofiles; the per-chunk writes of a download stay plain `os.write` (see `DiskSink.write`).
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import aiofiles

from crawler.store import layout

PARTIAL_DIR = ".partial"
_READ_CHUNK = 1 << 20


class DiskStore:
    remote = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)
        self._root = str(root)
        self._made_dirs: set[str] = set()
        self._tmpfile = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")
        self._dir_fd = -1

    async def open(self) -> None:
        """Nothing to connect to; the crawl's `clear_leftovers()` makes the folders it needs."""

    async def close(self) -> None:
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    async def clear_leftovers(self) -> int:
        """Remove named partial files of killed runs; only the single writer calls this, so none is in use."""
        partial = self.root / PARTIAL_DIR
        partial.mkdir(parents=True, exist_ok=True)
        removed = 0
        for entry in os.scandir(partial):
            if entry.is_file(follow_symlinks=False) or entry.is_symlink():
                os.unlink(entry.path)
                removed += 1
        return removed

    def sink(self, rel_path: str, content_type: str) -> DiskSink:
        folder, _, name = rel_path.rpartition("/")
        target_dir = f"{self._root}/{folder}"
        if target_dir not in self._made_dirs:
            os.makedirs(target_dir, exist_ok=True)
            self._made_dirs.add(target_dir)
        return DiskSink(self, target_dir, f"{self._root}/{rel_path}", name)

    def path(self, rel_path: str) -> str:
        """Where the file lives, for group commit's fsync."""
        return f"{self._root}/{rel_path}"

    async def digest(self, rel_path: str) -> tuple[str, int] | None:
        """(sha256, size); None if there is no such file; OSError if it cannot be read."""
        return await read_digest(self.root / rel_path, strict=True)

    async def read(self, rel_path: str) -> bytes:
        async with aiofiles.open(self.root / rel_path, "rb") as f:
            return await f.read()

    # -- used by DiskSink ----------------------------------------------------------------------

    def _open_unnamed(self, folder: str, name: str) -> tuple[int, str | None]:
        """An anonymous file in `folder` (O_TMPFILE): it has no name until it is complete, so a crash
        leaves nothing behind and no rename is needed. Else a named file in .partial/."""
        if self._tmpfile:
            try:
                return os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o644), None
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                    raise
                self._tmpfile = False  # this filesystem has none: use named .part files from now on
        part = f"{self._root}/{PARTIAL_DIR}/{name}{layout.PART_SUFFIX}"
        return os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), part

    def _link(self, fd: int, final: str) -> None:
        """Name the complete anonymous file. Raises LinkUnsupported where that cannot be done."""
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
            raise LinkUnsupported(e.strerror or str(e)) from None


class LinkUnsupported(Exception):
    """O_TMPFILE files cannot be linked on this filesystem; the next attempt uses a named .part file."""


class DiskSink:
    __slots__ = ("_store", "_final", "_fd", "_part", "_done")

    def __init__(self, store: DiskStore, folder: str, final: str, name: str) -> None:
        self._store = store
        self._final = final
        self._fd, self._part = store._open_unnamed(folder, name)
        self._done = False

    async def write(self, chunk: bytes) -> None:
        # Page-cache writes of one chunk take microseconds; a thread hop per chunk costs more.
        view = memoryview(chunk)
        fd = self._fd
        while view:
            view = view[os.write(fd, view):]

    async def commit(self) -> None:
        try:
            if self._part is not None:
                os.replace(self._part, self._final)
            else:
                self._store._link(self._fd, self._final)
            self._done = True
        finally:
            self._release()

    async def abort(self) -> None:
        self._release()

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._part is not None and not self._done:
            try:
                os.unlink(self._part)
            except FileNotFoundError:
                pass
            self._part = None


async def read_digest(path: Path, strict: bool = False) -> tuple[str, int] | None:
    """(sha256, size) of a file; None if it is missing (or, unless `strict`, cannot be read).

    Each chunk is read in aiofiles' thread and hashed on the loop (~1 ms per MiB): callers hash
    files one or a few at a time, beside no download.
    """
    digest, size = hashlib.sha256(), 0
    try:
        async with aiofiles.open(path, "rb") as f:
            while chunk := await f.read(_READ_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        return None
    except OSError:
        if strict:
            raise
        return None
    return digest.hexdigest(), size
