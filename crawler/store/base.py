"""The contract every image store keeps, on disk or in an object store: a sink per download, visible on commit.

    sink = store.sink("images/000/012/12345.jpeg", "image/jpeg")
    await sink.write(chunk) ...; await sink.commit()     # or await sink.abort()

Nothing appears at a final path before `commit()`, which the downloader calls only after checking size
and sha256; kill -9 at any point leaves no partial file or object under a final name (what it may
leave, `clear_leftovers()` removes at the next start, called by the single writer only). Failures are
OSErrors: `DiskFull` and `StoreUnavailable` (crawler.store.errors) name the ones a caller treats apart;
`open()` raises `StoreError` when the store cannot be used at all. `DiskStore` (store/disk.py) and
`RemoteStore` (store/remote.py) implement it; the downloader and crawl see only this.
"""

from __future__ import annotations

from typing import Protocol


class Sink(Protocol):
    """One download attempt's body, invisible until `commit()`; `abort()` drops it and never raises."""

    async def write(self, chunk: bytes) -> None: ...

    async def commit(self) -> None: ...

    async def abort(self) -> None: ...


class Store(Protocol):
    """Where images are written and read back (by `verify` and the power-loss re-check)."""

    @property
    def remote(self) -> bool:
        """True for an object store: a completed upload is durable, no fsync needed."""
        ...

    @property
    def url(self) -> str:
        """The store's location as the user gave it, for messages."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def clear_leftovers(self) -> int:
        """Remove what killed runs left unfinished; the count removed."""
        ...

    def sink(self, rel_path: str, content_type: str) -> Sink: ...

    async def digest(self, rel_path: str) -> tuple[str, int] | None:
        """(sha256, size) of a stored file; None if absent; OSError if it cannot be read."""
        ...

    async def read(self, rel_path: str) -> bytes: ...
