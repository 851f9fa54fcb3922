"""An opened mirror directory: its lock, and what earlier runs settled (the done-set, failures, checkpoint).

Opened once per process; a single crawl or every pass of `follow` runs inside it, so the done-set is
loaded once and kept current in memory instead of re-read per pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from crawler.config.settings import ConfigError
from crawler.state import resume, snapshot
from crawler.state.fold import ResumeState
from crawler.state.lock import DirLock
from crawler.state.manifest import MANIFEST_NAME
from crawler.state.records import Record
from crawler.store.disk import read_digest


def prepare_root(root: Path) -> None:
    """The mirror directory exists and is writable, or a ConfigError says why not."""
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--out {root} exists and is not a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {root} cannot be created: {e.strerror}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {root} is not writable")


class Mirror:
    def __init__(self, root: Path, query: str, log: Callable[[str], None], models: bool = False,
                 images: Path | None = None) -> None:
        """`root` holds the manifest and lock; `images` is where files are (None: an object store,
        where an upload that completed survives a power loss and needs no re-check)."""
        self.root = root
        self.images = images
        self.query = query
        self.models = models
        self.log = log
        self.manifest = root / MANIFEST_NAME
        self.lock = DirLock(root)
        self.state = ResumeState()

    async def __aenter__(self) -> Mirror:
        prepare_root(self.root)
        self.lock.acquire()
        try:
            self.reload()
            await self._recheck_unverified()
        except BaseException:
            self.lock.release()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            # The state is the fold of the whole log (every append was fed to it): save it so the next
            # start reads nothing but what is appended after this point.
            snapshot.save(self.manifest, self.state)
        except OSError as e:
            self.log(f"warning: could not save the resume snapshot ({e.strerror or e}); the next start reads the whole log")
        finally:
            self.lock.release()

    def reload(self) -> None:
        state = resume.load(self.manifest, self.query, self.models)
        if state.bad_lines:
            shown = ", ".join(map(str, state.bad_lines[:5])) + (" ..." if len(state.bad_lines) > 5 else "")
            self.log(f"warning: {len(state.bad_lines)} unreadable line(s) in {MANIFEST_NAME} ignored (line {shown}); "
                     "the file is left as it is")
        self.state = state

    async def _recheck_unverified(self) -> None:
        """Done records written after the last group commit: keep only those whose file is intact."""
        if not self.state.unverified or self.images is None:
            self.state.unverified = []
            return
        lost = await _damaged(self.images, self.state.unverified)
        for record in lost:
            self.state.forget(record)
        self.state.unverified = []
        if lost:
            self.log(f"{len(lost)} recent image(s) recorded done have a missing or damaged file (power loss?): "
                     "they will be downloaded again")


async def _damaged(root: Path, records: list[Record]) -> list[Record]:
    """The done records whose file is missing, unreadable or not what was recorded (one at a time:
    this runs before any download starts, and a power loss leaves at most a second of records)."""
    damaged = []
    for record in records:
        found = await read_digest(root / str(record.get("path")))
        if found is None or found[0] != record.get("sha256"):
            damaged.append(record)
    return damaged
