"""Export output appears only complete: every file is written as `<name>.part` and renamed into place.

    part = part_of(target); ...write part...; publish(part, target)      # or write_bytes / copy_file

A killed export (kill -9) leaves at most `.part` files (never a half file under a final name); the next
export of the same target truncates or removes them. An interrupted one (an exception, Ctrl-C) removes
the `.part` it was writing. Renames are not fsynced: an export is re-run, not recovered.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def part_of(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def publish(part: Path, target: Path) -> None:
    """The complete `part` becomes `target` (replacing any earlier export of it)."""
    os.replace(part, target)


def write_bytes(target: Path, data: bytes) -> None:
    part = part_of(target)
    try:
        part.write_bytes(data)
        publish(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def copy_file(source: Path, target: Path) -> None:
    part = part_of(target)
    try:
        shutil.copyfile(source, part)
        publish(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def remove_parts(folder: Path, pattern: str = "*.part") -> None:
    """Drop the `.part` files a killed export left in `folder` (they never hold anything complete)."""
    for part in folder.glob(pattern):
        part.unlink(missing_ok=True)
