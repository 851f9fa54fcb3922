"""A request that never got an answer, said in words: which host, what went wrong, which request.

    raise Retryable("connection", connection_detail(e, urls.redact(url))) from None
    # -> "cannot resolve host nonexistent.invalid (no such name in DNS) for GET http://nonexistent.invalid/..."

aiohttp (the API's client) and `net.cdn` (the CDN's) name these failures by class
(`ClientConnectorDNSError`, `ResolveFailed`); users need the host and the cause.
The caller passes the URL already redacted: nothing here sees a secret.
"""

from __future__ import annotations

import errno
from urllib.parse import urlsplit

import aiohttp

from crawler.net.cdn import errors as cdn

_CAUSES = {
    errno.ECONNREFUSED: "connection refused: nothing listens on that port",
    errno.ECONNRESET: "connection reset by the other side",
    errno.EHOSTUNREACH: "host unreachable: no route to it",
    errno.ENETUNREACH: "network unreachable: is this machine online?",
    errno.ETIMEDOUT: "connection timed out",
}


def connection_detail(error: BaseException, url: str) -> str:
    """`error` (an aiohttp or `net.cdn` error) as one line naming the host, the cause and the request `url`."""
    where = _host_port(url)
    request = f" for GET {url}" if url else ""
    if isinstance(error, (aiohttp.ClientConnectorDNSError, cdn.ResolveFailed)):
        return f"cannot resolve host {_host(url) or where} (no such name in DNS, or no DNS reachable){request}"
    certificate = (error.certificate_error if isinstance(error, aiohttp.ClientConnectorCertificateError)
                   else error.error if isinstance(error, cdn.TlsFailed) and error.certificate else None)
    if certificate is not None:
        why = getattr(certificate, "verify_message", "") or "not trusted"
        return (f"TLS certificate of {where} not trusted (certificate verify failed: {why}); trust its CA with "
                f"--ca-file PEM or SSL_CERT_FILE{request}")
    if isinstance(error, (aiohttp.ClientSSLError, cdn.TlsFailed)):
        return f"TLS handshake with {where} failed{request}"
    if isinstance(error, (aiohttp.ClientConnectorError, cdn.ConnectFailed)):
        os_error = error.os_error
        cause = _CAUSES.get(os_error.errno or 0) or (os_error.strerror or type(os_error).__name__).lower()
        return f"cannot connect to {where}: {cause}{request}"
    if isinstance(error, cdn.Disconnected) and isinstance(error.os_error, OSError):
        cause = _CAUSES.get(error.os_error.errno or 0) or (error.os_error.strerror or "connection failed").lower()
        return f"{where}: {cause} before answering{request}"
    if isinstance(error, (aiohttp.ServerDisconnectedError, cdn.Disconnected)):
        return f"{where} closed the connection before answering{request}"
    if isinstance(error, cdn.BadResponse):
        return f"{where} answered with a malformed response ({error}){request}"
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
