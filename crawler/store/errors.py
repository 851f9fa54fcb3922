"""Errors of an image store, importable without fsspec (the object-store backends are an optional extra)."""


class StoreError(Exception):
    """The store cannot be used at all (no such bucket, refused credentials): one readable line."""


class StoreUnavailable(OSError):
    """One upload or read failed (connection, 5xx, throttling): retried like a network error."""


class DiskFull(OSError):
    """The disk holding the mirror is full; the crawl must stop, not fail items one by one."""
