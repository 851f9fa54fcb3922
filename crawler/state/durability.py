"""Group commit: make recently finished files, then the manifest, durable about ten times a second.

    commits = GroupCommit(writer)      # one per crawl
    commits.add(final_path)            # after each file is linked into place (cheap: a list append)
    await commits.run()                # a task: syncs batches in a thread, off the event loop
    commits.close()                    # at the crawl's end, after its last commit

Records are written the moment an image is done (so kill -9 loses nothing); a `durable` marker
`{"upto": offset}` is appended only after the files of every record before `offset`, their folders
and the manifest itself reached the disk. After a power loss, only done records past the last marker
can name a damaged file: `ResumeState` re-checks exactly those.

How a batch reaches the disk: one syncfs(2) per filesystem the batch touches (the manifest's
included), which writes back what is still dirty, commits the journal once and flushes the disk's
cache -- the single flush of git's `core.fsyncMethod=batch`, without a call per file. Per-file fsync
forced one journal commit per file, thousands a second, each stalling the event loop's next file
creation (measured on ext4: 2-6 s per 1,000-2,000-file batch against ~0.1-0.2 s for one syncfs).
Starting each file's write-back as it is linked (sync_file_range, git's first step) was measured
too: it moved that work onto the event loop and made the crawl slower, so it is not done. syncfs
also writes what other programs left dirty on the same filesystem.

syncfs reports write-back errors (an EIO of background write-back, say) since Linux 5.8, but only
those recorded since its fd was opened or not yet collected by anyone. So the fd is held for the
whole crawl: the manifest's own, and for images on another filesystem (--state apart from --out) one
folder fd per such filesystem, opened the first time a batch touches it and closed by `close()`;
an fd opened per batch would miss an error another program's syncfs had collected between batches.
Which filesystem a folder is on is remembered, not asked again each batch. Where syncfs is missing
(not Linux), every file, its folder and the manifest are fsynced instead.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
from collections.abc import Callable

from crawler.state import records
from crawler.state.manifest import ManifestWriter


def _libc_syncfs() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # not Linux (or no libc to ask): fsync each file instead
        return None


_syncfs = _libc_syncfs()


def syncfs(fd: int) -> None:
    """Write back and commit the whole filesystem `fd` lives on, disk cache included (syncfs(2))."""
    assert _syncfs is not None
    if _syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class GroupCommit:
    __slots__ = ("writer", "fsync", "interval", "max_pending", "_pending", "_full", "_marked", "commits", "files_synced",
                 "_others")

    def __init__(self, writer: ManifestWriter, fsync: bool = True, interval: float = 0.1, max_pending: int = 2048) -> None:
        """`fsync=False` (--no-fsync) still writes markers, so a later run need not re-check anything."""
        self.writer = writer
        self.fsync = fsync
        self.interval = interval
        self.max_pending = max_pending
        self._pending: list[str] = []
        self._full = asyncio.Event()
        self._marked = -1  # the log's end just after our last marker: nothing to vouch for while it stays there
        self.commits = 0
        self.files_synced = 0
        self._others = OtherFilesystems()

    def add(self, path: str) -> None:
        self._pending.append(path)
        if len(self._pending) >= self.max_pending:
            self._full.set()

    async def run(self) -> None:
        """Commit `interval` seconds after the previous commit began, at once when it took longer or many
        files wait, until cancelled.

        Counted from the start, not the end, so a busy crawl's syncs run back to back and the disk writes
        while the crawl downloads; waiting a whole second after each sync left the disk idle between bursts
        (measured, 5,000 files of 50 KB: 1.0 s -> 0.25 s -> 0.05 s took the crawl from 4.9 s to 3.6-4.3 s
        to 4.0-4.2 s; 300 of 2 MB from 3.8 s to 3.2-3.6 s to 2.9-3.3 s)."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        while True:
            wait = self.interval - (loop.time() - began)
            if wait > 0 and not self._full.is_set():
                try:
                    await asyncio.wait_for(self._full.wait(), wait)
                except TimeoutError:
                    pass
            began = loop.time()
            await self.commit()

    async def commit(self) -> None:
        self._full.clear()
        batch, self._pending = self._pending, []
        upto = self.writer.offset  # every record written so far; their files are in `batch` or earlier
        if not batch and upto in (self.writer.durable_offset, self._marked):
            return
        if self.fsync:
            syncing = asyncio.ensure_future(asyncio.to_thread(_sync, batch, self.writer, self._others))
            try:
                await asyncio.shield(syncing)
            except asyncio.CancelledError:
                # The thread goes on regardless; hand the batch to the final commit so no marker
                # ever claims a file whose sync was not seen to finish.
                self._pending[:0] = batch
                raise
            self.files_synced += len(batch)
        self.writer.durable_offset = upto
        self.commits += 1
        appended_meanwhile = self.writer.offset != upto  # records written while the batch synced
        self.writer.append(records.durable(upto, len(batch), self.fsync))
        # Those lie before the marker but past `upto`: the log's end is then no proof that all is vouched for.
        self._marked = -1 if appended_meanwhile else self.writer.offset

    def close(self) -> None:
        """Close the folder fds held on other filesystems; a commit after this opens one per batch."""
        self._others.close()


class OtherFilesystems:
    """The filesystems images are on apart from the manifest's: one folder fd held open on each.

    Used from the sync threads: a commit cancelled mid-sync leaves its thread running beside the next
    commit's, so the fds are taken, synced and closed under a lock (never closed under a running
    syncfs, never opened twice for one filesystem).
    """

    __slots__ = ("_fds", "_device_of", "_lock", "_closed")

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}  # st_dev -> an O_DIRECTORY fd on it
        self._device_of: dict[str, int] = {}  # image folder -> st_dev
        self._lock = threading.Lock()
        self._closed = False

    def device_of(self, folder: str) -> int | None:
        """The filesystem `folder` is on (None when it is gone), asked once per folder."""
        dev = self._device_of.get(folder)
        if dev is None:
            try:
                dev = os.stat(folder).st_dev
            except FileNotFoundError:
                return None
            if len(self._device_of) >= _FOLDERS_REMEMBERED:
                self._device_of.clear()  # a long crawl's old folders are not written again
            self._device_of[folder] = dev
        return dev

    def sync(self, dev: int, folder: str) -> None:
        """syncfs the filesystem `dev` through its held fd, opened at `folder` the first time."""
        with self._lock:
            fd = self._fds.get(dev)
            if fd is None:
                try:
                    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
                except FileNotFoundError:  # removed since, with the files in it
                    return
                if self._closed:  # a sync thread outliving the crawl's end: hold nothing
                    try:
                        syncfs(fd)
                    finally:
                        os.close(fd)
                    return
                self._fds[dev] = fd
            syncfs(fd)

    def close(self) -> None:
        with self._lock:
            fds, self._fds, self._closed = self._fds, {}, True
        for fd in fds.values():
            os.close(fd)


_FOLDERS_REMEMBERED = 8192  # more than a batch touches (at most max_pending files, 2048 by default)


def _sync(files: list[str], writer: ManifestWriter, others: OtherFilesystems) -> None:
    if _syncfs is None:
        _sync_each(files, writer)
        return
    manifest_fd = writer.fileno()
    manifest_dev = os.fstat(manifest_fd).st_dev
    touched: dict[int, str] = {}  # another filesystem (--state apart from --out) -> a folder on it
    seen: set[str] = set()
    for path in files:
        folder = path.rpartition("/")[0]
        if folder in seen:
            continue
        seen.add(folder)
        dev = others.device_of(folder)
        if dev is not None and dev != manifest_dev:
            touched.setdefault(dev, folder)
    for dev, folder in touched.items():
        others.sync(dev, folder)
    syncfs(manifest_fd)  # last: the manifest's own filesystem, records included


def _sync_each(files: list[str], writer: ManifestWriter) -> None:
    """Without syncfs: fsync every file, each folder (the links themselves), then the manifest."""
    folders = set()
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # replaced by a newer download of the same image since
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        folders.add(os.path.dirname(path))
    for folder in folders:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    writer.sync()
