"""civitai-mirror: a polite, resumable asyncio mirror of CivitAI images and their generation metadata."""

from __future__ import annotations

import os as _os
import sys as _sys

__version__ = "0.1.0"

CaSettings = tuple[tuple[str | None, str | None], tuple[int, int]]


def ca_settings() -> CaSettings:
    """Where OpenSSL's default CA store is read from now (SSL_CERT_FILE, SSL_CERT_DIR) and their mtimes."""
    env = (_os.environ.get("SSL_CERT_FILE"), _os.environ.get("SSL_CERT_DIR"))
    return env, (file_stamp(env[0]), file_stamp(env[1]))


def file_stamp(path: str | None) -> int:
    """The file's (or folder's) mtime in ns; 0 when there is none: a changed store makes a new TLS context."""
    try:
        return _os.stat(path).st_mtime_ns if path else 0
    except OSError:
        return 0


#: `ca_settings()` when this package was first imported, if aiohttp was not imported yet (else None).
#: aiohttp builds its verified TLS context once, at its own import, from these: while they still hold,
#: `net.sessions` uses that context rather than reading the same CA store a second time (~40 ms a command).
CA_SETTINGS_AT_IMPORT: CaSettings | None = None if "aiohttp" in _sys.modules else ca_settings()
