"""How every API endpoint answers: a fault, 400 for bad parameters, 404 for an unknown id, or JSON.

Also the paging metadata (`nextCursor`, `nextPage`) that `/images` and `/models` share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from aiohttp import web

from crawler.simulator import abrupt
from crawler.simulator.cursors import CursorError, StaleCursor
from crawler.simulator.faults import FaultPicker
from crawler.simulator.log import ENTRY_KEY, LogEntry
from crawler.simulator.query import QueryError

_HTML_503 = b"<html><head><title>503 Service Unavailable</title></head><body><h1>503 Service Unavailable</h1></body></html>"
_HTML_500 = b"<html><head><title>500 Internal Server Error</title></head><body><h1>Internal Server Error</h1></body></html>"


class NotFound(LookupError):
    """An id the site does not have (HTTP 404 with a JSON error)."""


def json_answer(
    request: web.Request, faults: FaultPicker, make_body: Callable[[], bytes], error_key: str = "error"
) -> web.Response:
    """One roll of the API faults, then `make_body()` unless a fault answers instead.

    4xx bodies are `{error_key: text}`; a stale cursor always answers `{"message": ...}`, as the API does.
    """
    entry: LogEntry = request[ENTRY_KEY]
    fault = faults.api()
    entry.fault = fault
    if fault == "reset":
        abrupt.reset(request)
        return web.Response(status=500)  # never sent: the connection is gone
    if fault == "429":
        return web.json_response({error_key: "Too Many Requests"}, status=429, headers=_retry_after(faults))
    if fault == "503":
        return web.Response(body=_HTML_503, status=503, content_type="text/html", headers=_retry_after(faults))
    if fault == "500":
        return web.Response(body=_HTML_500, status=500, content_type="text/html")
    try:
        body = make_body()
    except StaleCursor as exc:
        return error(400, str(exc), "message")
    except (QueryError, CursorError) as exc:
        return error(400, str(exc), error_key)
    except NotFound as exc:
        return error(404, str(exc), error_key)
    if fault == "malformed":
        body = body[: len(body) // 2]  # cut mid-document: status 200, JSON that does not parse
    return web.Response(body=body, content_type="application/json")


def next_page(request: web.Request, origin: str, cursor: str | int) -> dict[str, Any]:
    """Paging metadata: `nextPage` repeats every parameter of the request, with the new cursor."""
    pairs = [(k, v) for k, v in request.query.items() if k != "cursor"] + [("cursor", str(cursor))]
    return {"nextCursor": cursor, "nextPage": f"{origin}{request.path}?{urlencode(pairs, quote_via=quote)}"}


def error(status: int, message: str, key: str = "error") -> web.Response:
    """A JSON error body as the API sends it: `{"error": ...}` (until 2026-08) or `{"message": ...}`."""
    return web.Response(body=orjson.dumps({key: message}), status=status, content_type="application/json")


def _retry_after(faults: FaultPicker) -> dict[str, str]:
    return {"Retry-After": faults.retry_after()}
