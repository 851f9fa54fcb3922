"""The store images are written to, chosen by --out: a directory, or an object store URL."""

from __future__ import annotations

from typing import Any

from crawler.locations import is_remote, local_path
from crawler.store.base import Store
from crawler.store.disk import DiskStore
from crawler.store.remote import RemoteStore


def make_store(out: str, storage_options: dict[str, Any]) -> Store:
    """A DiskStore for a directory, a RemoteStore (fsspec) for a URL. fsspec itself is imported only by
    `RemoteStore.open()`, which raises StoreError with the install hint when it is missing."""
    if is_remote(out):
        return RemoteStore(out, storage_options)
    return DiskStore(local_path(out))
