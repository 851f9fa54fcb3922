"""Files of our own (plans, the exclusion list, dry-run counts, the resume snapshot) replaced whole.

    write_durable(path, data)   # kept after a power loss: the new content or the old, never a mix
    write_whole(path, data)     # a cache: readers and kill -9 see old or new; a power loss may lose it

Both write `<name>.part` beside `path` and rename it over `path`, so a reader never sees half a file.
`write_durable` also fsyncs the `.part` before the rename and the folder after it: without the first
a power loss can leave the new name on an empty or partial file; without the second the rename
itself may be lost. On any failure the `.part` is removed (best effort), `path` keeps its old content
(or stays absent) and the OSError is raised; `data` may be one bytes object or its pieces in order.
The folder must exist: creating it is the caller's choice.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path


def write_durable(path: Path, data: bytes | Sequence[bytes]) -> None:
    """Replace `path` with `data`; once this returns, a power loss keeps the new content."""
    _replace(path, data, durable=True)


def write_whole(path: Path, data: bytes | Sequence[bytes]) -> None:
    """Replace `path` with `data`, not synced: for what may be lost to a power loss and rebuilt."""
    _replace(path, data, durable=False)


def part_of(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _replace(path: Path, data: bytes | Sequence[bytes], durable: bool) -> None:
    part = part_of(path)
    try:
        with open(part, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
            else:
                for piece in data:
                    f.write(piece)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(part, path)
    except BaseException:
        try:
            part.unlink(missing_ok=True)
        except OSError:
            pass  # the error that brought us here is the one to report
        raise
    if durable:
        sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """fsync a folder, so the names created, renamed or removed in it are on the disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno != errno.EINVAL:  # a filesystem that cannot sync a folder (some FUSE ones) says EINVAL
            raise
    finally:
        os.close(fd)
