"""A request that never got an answer, said in words: which host, what went wrong, which request.

    raise Retryable("connection", connection_detail(e, urls.redact(url))) from None
    # -> "cannot resolve host nonexistent.invalid (no such name in DNS) for GET http://nonexistent.invalid/..."

aiohttp names these failures by class (`ClientConnectorDNSError`); users need the host and the cause.
The caller passes the URL already redacted: nothing here sees a secret.
"""

from __future__ import annotations

import errno
from urllib.parse import urlsplit

import aiohttp

_CAUSES = {
    errno.ECONNREFUSED: "connection refused: nothing listens on that port",
    errno.ECONNRESET: "connection reset by the other side",
    errno.EHOSTUNREACH: "host unreachable: no route to it",
    errno.ENETUNREACH: "network unreachable: is this machine online?",
    errno.ETIMEDOUT: "connection timed out",
}


def connection_detail(error: BaseException, url: str) -> str:
    """`error` (an aiohttp client error) as one line naming the host, the cause and the request `url`."""
    where = _host_port(url)
    request = f" for GET {url}" if url else ""
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve host {_host(url) or where} (no such name in DNS, or no DNS reachable){request}"
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        why = getattr(error.certificate_error, "verify_message", "") or "not trusted"
        return (f"TLS certificate of {where} not trusted (certificate verify failed: {why}); trust its CA with "
                f"--ca-file PEM or SSL_CERT_FILE{request}")
    if isinstance(error, aiohttp.ClientSSLError):
        return f"TLS handshake with {where} failed{request}"
    if isinstance(error, aiohttp.ClientConnectorError):
        os_error = error.os_error
        cause = _CAUSES.get(os_error.errno or 0) or (os_error.strerror or type(os_error).__name__).lower()
        return f"cannot connect to {where}: {cause}{request}"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return f"{where} closed the connection before answering{request}"
    if isinstance(error, aiohttp.ClientOSError):
        cause = _CAUSES.get(error.errno or 0) or (error.strerror or "connection failed").lower()
        return f"{where}: {cause}{request}"
    text = str(error).strip()
    return f"{where}: {type(error).__name__}{': ' + text if text else ''}{request}"


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _host_port(url: str) -> str:
    """`host:port` of `url` (the scheme's port when none is written); `the server` when unparseable."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return "the server"
    if not parts.hostname:
        return "the server"
    return f"{parts.hostname}:{port}" if port else parts.hostname


def last_request(error: BaseException, last_url: str | None) -> str:
    """The " (last request URL)" suffix of an API error's line: left out where there is no URL, or where
    the error's own text already names the request (a connection failure, see `connection_detail`)."""
    if not last_url or getattr(error, "reason", None) == "connection":
        return ""
    return f" (last request {last_url})"
