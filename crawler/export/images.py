"""Where an export reads the mirror's image files: the mirror's own disk, or its object store.

Both answer `is_file`, `read`, `local` (a path to read in place, or None) and `prefetch` (a hint that
these paths come next). Reading is synchronous: an export is a batch job on its own thread or process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from crawler.state.records import Record

_PREFETCH = 64  # images read together from an object store


class Images(Protocol):
    def is_file(self, rel: str) -> bool: ...
    def local(self, rel: str) -> Path | None: ...
    def read(self, rel: str) -> bytes: ...
    def prefetch(self, rels: list[str]) -> None: ...


class LocalImages:
    """The mirror's images on disk: read in place (tar.add, hard links)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def is_file(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def local(self, rel: str) -> Path | None:
        return self.root / rel

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def prefetch(self, rels: list[str]) -> None:
        pass  # read in place


class RemoteImages:
    """The mirror's images in an object store, read through fsspec (synchronously: export is a batch job)."""

    def __init__(self, url: str, storage_options: dict[str, Any]) -> None:
        import fsspec  # an optional extra, needed only for object stores
        self.url = url.rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.url, **storage_options)
        self._fetched: dict[str, bytes] | None = None

    def prefetch(self, rels: list[str]) -> None:
        """Fetch the next images together: one GET at a time would bound an export at ~30 per second."""
        paths = {f"{self.base}/{rel}": rel for rel in rels}
        got = self.fs.cat(list(paths), on_error="omit")
        self._fetched = {paths[p]: data for p, data in got.items() if p in paths}

    def is_file(self, rel: str) -> bool:
        if self._fetched is not None:
            return rel in self._fetched
        return bool(self.fs.isfile(f"{self.base}/{rel}"))

    def local(self, rel: str) -> Path | None:
        return None

    def read(self, rel: str) -> bytes:
        if self._fetched is not None and rel in self._fetched:
            return self._fetched.pop(rel)
        data: bytes = self.fs.cat_file(f"{self.base}/{rel}")
        return data


def prefetched(records: Iterator[Record], images: Images) -> Iterator[Record]:
    """The records, with the images of each next group of them fetched together first."""
    group: list[Record] = []
    for record in records:
        group.append(record)
        if len(group) == _PREFETCH:
            images.prefetch([str(r.get("path") or "") for r in group])
            yield from group
            group = []
    if group:
        images.prefetch([str(r.get("path") or "") for r in group])
        yield from group
