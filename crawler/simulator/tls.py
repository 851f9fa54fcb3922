"""The simulator's HTTPS: a throw-away test CA and a certificate for 127.0.0.1 and localhost, made at start.

    tls = ServerTls.make(ca_path)   # ca_path "" = a temporary file, removed by close()
    web.TCPSite(runner, host, port, ssl_context=tls.context); ...; tls.handshakes; tls.close()

The CA's PEM is written to `ca_file` for clients to trust (`crawl --ca-file`, or `SSL_CERT_FILE`).
`handshakes` counts TLS handshakes the server began (new connections and resumptions alike), so a
benchmark can see how well a client reuses its connections. Needs `trustme` (a test dependency): without
it `make` raises TlsUnavailable, whose message is the one line to show.
"""

from __future__ import annotations

import os
import ssl
import tempfile


class TlsUnavailable(RuntimeError):
    """TLS was asked for but cannot be set up; the message says what to install."""


class ServerTls:
    """The server side of the simulator's TLS: its context, the CA file and the handshake count."""

    __slots__ = ("context", "ca_file", "handshakes", "_owned")

    def __init__(self, context: ssl.SSLContext, ca_file: str, owned: bool) -> None:
        self.context = context
        self.ca_file = ca_file
        self.handshakes = 0
        self._owned = owned
        # OpenSSL calls the server-name callback once per ClientHello, with or without SNI (clients send
        # none for an IP address): the cheapest place to count handshakes on the server side.
        context.sni_callback = self._count

    def _count(self, _conn: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext) -> None:
        self.handshakes += 1

    @classmethod
    def make(cls, ca_path: str = "") -> ServerTls:
        """A fresh CA and a certificate it signed for 127.0.0.1, ::1 and localhost; the CA's PEM goes to
        `ca_path` (or a new temporary file). Raises TlsUnavailable without `trustme`."""
        try:
            import trustme  # optional: a test dependency, needed only by `sim --tls`
        except ImportError:
            raise TlsUnavailable("--tls needs the trustme package: pip install trustme") from None
        ca = trustme.CA(organization_name="civitai-mirror simulator")
        cert = ca.issue_cert("127.0.0.1", "::1", "localhost")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        owned = not ca_path
        if owned:
            fd, ca_path = tempfile.mkstemp(prefix="civitai-sim-ca-", suffix=".pem")
            os.close(fd)
        ca.cert_pem.write_to_path(ca_path)
        return cls(context, ca_path, owned)

    def close(self) -> None:
        """Remove the CA file if this object made it (a path given by the caller is the caller's)."""
        if self._owned:
            try:
                os.unlink(self.ca_file)
            except FileNotFoundError:
                pass
            self._owned = False
