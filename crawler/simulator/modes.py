"""`SimConfig.api_mode`: the ways a hostile or broken API answers `/images` beyond random faults.

Fixed answers (an auth or region refusal, a redirect away, HTML, no `items`) replace every page;
`cursor-loop` and `empty-forever` are page rewrites that `ImagesEndpoint` applies after page two.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from crawler.simulator.hostile import localhost_origin

_REFUSALS = {
    "401": "Unauthorized: this request needs a valid API key",
    "403": "Forbidden",
    "451": "Unavailable For Legal Reasons: not available in your region",
}
_HTML = b"<html><head><title>CivitAI</title></head><body><h1>We'll be right back</h1></body></html>"
#: Pages answered normally before `cursor-loop` and `empty-forever` turn on.
NORMAL_PAGES = 2


def fixed_answer(mode: str, request: web.Request) -> web.Response | None:
    """The answer `mode` gives whatever was asked, or None when the mode serves real pages."""
    if mode in _REFUSALS:
        return web.Response(
            body=orjson.dumps({"error": _REFUSALS[mode]}), status=int(mode), content_type="application/json"
        )
    if mode == "no-items":
        return web.Response(body=b'{"metadata":{}}', content_type="application/json")
    if mode == "not-json":
        return web.Response(body=_HTML, content_type="text/html")
    if mode == "redirect":
        # Our own server under another name: a crawler that follows API redirects would leak its key.
        target = f"{localhost_origin(request.url.port)}{request.path}"
        if request.query_string:
            target += "?" + request.query_string
        return web.Response(status=302, headers={"Location": target})
    return None
