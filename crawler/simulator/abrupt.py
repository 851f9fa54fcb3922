"""Ending a connection the ways a flaky network does: a reset (RST) or a premature clean close.

Both leave aiohttp's own response machinery nothing to write to, which it tolerates quietly.
"""

from __future__ import annotations

import socket
import struct

from aiohttp import web


def reset(request: web.BaseRequest) -> None:
    """Abort with a TCP RST (SO_LINGER 0), discarding anything not yet sent."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def close_early(request: web.BaseRequest) -> None:
    """Flush what was written and close with FIN: the client sees fewer bytes than Content-Length."""
    transport = request.transport
    if transport is not None:
        transport.close()
