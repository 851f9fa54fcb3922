"""One crawler per mirror directory: an advisory lock on `DIR/.lock` held for the life of the process.

flock(2) is released by the kernel when the holder dies, so a lock left by a killed run is simply
taken over; the file's content (the holder's pid) is only there to name it in the error message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = ".lock"


class LockBusy(RuntimeError):
    pass


class DirLock:
    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_NAME
        self._fd = -1

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "another process"
            os.close(fd)
            raise LockBusy(f"{self.path.parent} is in use by another civitai-mirror (pid {holder}); "
                           "wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1

    def __enter__(self) -> DirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
