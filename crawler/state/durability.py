"""Group commit: make recently finished files, then the manifest, durable about once a second.

    commits = GroupCommit(writer)      # one per crawl
    commits.add(final_path)            # after each rename into place (cheap: a list append)
    await commits.run()                # a task: fsyncs batches in a thread, off the event loop

Records are written the moment an image is done (so kill -9 loses nothing); a `durable` marker
`{"upto": offset}` is appended only after the files of every record before `offset`, their folders
and the manifest itself were fsynced. After a power loss, only done records past the last marker can
name a damaged file: `ResumeState` re-checks exactly those.
"""

from __future__ import annotations

import asyncio
import os

from crawler.state import records
from crawler.state.manifest import ManifestWriter


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
                # ever claims a file whose fsync was not seen to finish.
                self._pending[:0] = batch
                raise
            self.files_synced += len(batch)
        self.writer.durable_offset = upto
        self.commits += 1
        self.writer.append(records.durable(upto, len(batch), self.fsync))
        self._marked = self.writer.offset


def _sync(files: list[str], writer: ManifestWriter) -> None:
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
    for folder in folders:  # the renames themselves
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    writer.sync()
