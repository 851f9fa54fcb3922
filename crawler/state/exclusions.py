"""The mirror's exclusion list: image keys the user took out of the dataset, one per line in `DIR/exclusions.txt`.

`export` leaves these images out and `status` counts them; the images and the manifest stay as they are,
so an exclusion is undone by removing the key. Keys are written as `export` names them (the numeric id,
else the uuid). Every change rewrites the file whole and durably (`files.write_durable`, under an
flock), so readers see the old list or the new one, never half a list, and a power loss keeps the
last change made; a missing file is an empty list. Lines that are blank or start with `#` are
ignored, so the file may be edited by hand.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from pathlib import Path

from crawler.state.files import write_durable

EXCLUSIONS_NAME = "exclusions.txt"
_LOCK_NAME = ".exclusions.lock"
MAX_KEY_LENGTH = 200


class BadKey(ValueError):
    """A key that cannot be one line of the list."""


def path_of(state_dir: Path) -> Path:
    return state_dir / EXCLUSIONS_NAME


def load(state_dir: Path) -> frozenset[str]:
    """The excluded keys; empty when there is no list."""
    try:
        text = path_of(state_dir).read_text(encoding="utf-8")
    except FileNotFoundError:
        return frozenset()
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def add(state_dir: Path, keys: Iterable[str]) -> frozenset[str]:
    """Exclude `keys` (already excluded ones are kept once); returns the new list."""
    return _change(state_dir, _checked(keys), set())


def remove(state_dir: Path, keys: Iterable[str]) -> frozenset[str]:
    """Include `keys` again; returns the new list."""
    return _change(state_dir, set(), _checked(keys))


def _checked(keys: Iterable[str]) -> set[str]:
    checked = set()
    for key in keys:
        key = str(key).strip()
        if not key or len(key) > MAX_KEY_LENGTH or key.startswith("#") or any(c in key for c in "\r\n\0"):
            raise BadKey(f"not an image key: {key[:40]!r}")
        checked.add(key)
    return checked


def _change(state_dir: Path, added: set[str], removed: set[str]) -> frozenset[str]:
    # The flock serialises writers (two browser tabs, a script): each reads the list it replaces.
    fd = os.open(state_dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        current = load(state_dir)
        new = frozenset((current | added) - removed)
        if new != current:
            _write(path_of(state_dir), new)
        return new
    finally:
        os.close(fd)


def _write(target: Path, keys: frozenset[str]) -> None:
    body = "".join(f"{key}\n" for key in sorted(keys, key=lambda k: (not k.isdigit(), len(k), k)))
    write_durable(target, body.encode("utf-8"))
