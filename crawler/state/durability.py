"""Group commit: make recently finished files, then the manifest, durable about once a second.

    commits = GroupCommit(writer)      # one per crawl
    commits.add(final_path)            # after each file is linked into place (cheap: a list append)
    await commits.run()                # a task: syncs batches in a thread, off the event loop

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
also writes what other programs left dirty on the same filesystem; it reports write-back errors
since Linux 5.8. Where syncfs is missing (not Linux), every file, its folder and the manifest are
fsynced instead.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
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
    __slots__ = ("writer", "fsync", "interval", "max_pending", "_pending", "_full", "_marked", "commits", "files_synced")

    def __init__(self, writer: ManifestWriter, fsync: bool = True, interval: float = 1.0, max_pending: int = 2048) -> None:
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

    def add(self, path: str) -> None:
        self._pending.append(path)
        if len(self._pending) >= self.max_pending:
            self._full.set()

    async def run(self) -> None:
        """Commit every `interval` seconds (sooner when many files wait) until cancelled."""
        while True:
            try:
                await asyncio.wait_for(self._full.wait(), self.interval)
            except TimeoutError:
                pass
            await self.commit()

    async def commit(self) -> None:
        self._full.clear()
        batch, self._pending = self._pending, []
        upto = self.writer.offset  # every record written so far; their files are in `batch` or earlier
        if not batch and upto in (self.writer.durable_offset, self._marked):
            return
        if self.fsync:
            syncing = asyncio.ensure_future(asyncio.to_thread(_sync, batch, self.writer))
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
        self.writer.append(records.durable(upto, len(batch), self.fsync))
        self._marked = self.writer.offset


def _sync(files: list[str], writer: ManifestWriter) -> None:
    if _syncfs is None:
        _sync_each(files, writer)
        return
    manifest_fd = writer.fileno()
    manifest_dev = os.fstat(manifest_fd).st_dev
    others: dict[int, str] = {}  # another filesystem (--state apart from --out) -> a folder on it
    seen: set[str] = set()
    for path in files:
        folder = path.rpartition("/")[0]
        if folder in seen:
            continue
        seen.add(folder)
        try:
            dev = os.stat(folder).st_dev
        except FileNotFoundError:
            continue
        if dev != manifest_dev:
            others.setdefault(dev, folder)
    for folder in others.values():
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            syncfs(fd)
        finally:
            os.close(fd)
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
