"""The store images are written to, chosen by --out: a directory, or an object store URL."""

from __future__ import annotations

from typing import Any

from crawler.locations import is_remote, local_path


def make_store(out: str, storage_options: dict[str, Any]) -> Any:
    """The store images are written to: a DiskStore for a directory, a RemoteStore (fsspec) for a URL."""
    if is_remote(out):
        try:
            from crawler.store.remote import RemoteStore
        except ImportError as e:  # fsspec or the backend (s3fs, gcsfs) is not installed
            from crawler.config.settings import ConfigError
            raise ConfigError(f"--out {out} needs fsspec and its backend: pip install 'civitai-mirror[s3]' ({e})") from None
        return RemoteStore(out, storage_options)
    from crawler.store.disk import DiskStore
    return DiskStore(local_path(out))
