"""How a CDN request fails: each a `ClientError`, said in words by `net.errors.connection_detail`.

The connection a request failed on is always closed, never pooled. `Truncated` is a body that ended
before its framing said (the downloader's `truncated`); the others mean no usable answer (`connection`).
"""

from __future__ import annotations

import ssl


class ClientError(Exception):
    """A request that got no usable answer; the connection it used is closed."""


class ResolveFailed(ClientError):
    def __init__(self, host: str, error: OSError) -> None:
        super().__init__(f"cannot resolve {host}: {error}")
        self.os_error = error


class ConnectFailed(ClientError):
    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.os_error = error


class TlsFailed(ClientError):
    """The TLS handshake failed; `error.verify_message` says why a certificate was refused."""

    def __init__(self, error: ssl.SSLError) -> None:
        super().__init__(str(error))
        self.error = error
        self.certificate = isinstance(error, ssl.SSLCertVerificationError)


class Disconnected(ClientError):
    """The server closed (or reset, `os_error`) the connection before the whole head of its answer."""

    def __init__(self, os_error: BaseException | None) -> None:
        super().__init__("closed before answering" if os_error is None else str(os_error))
        self.os_error = os_error


class BadResponse(ClientError):
    """The answer's head is not HTTP/1.x as the standard writes it (said in the message)."""


class Truncated(ClientError):
    """The body ended (connection closed or reset) before its framing said it would."""
