"""The aiohttp application of `serve`: routes, the write token, and the guards every request passes.

Reads go through one database thread; before answering, the index reads what the manifest gained
(usually nothing: one stat), so a page shows what a running crawl has written. Writes (exclusions) need the token embedded in this
server's pages, sent as the form field `token` or the header `X-Token`; another site open in the same
browser cannot read the page, so cannot send it (403 otherwise). The Host header must name this server,
so a DNS-rebinding page cannot read the token either. Bad parameters answer 400 with one line of
text; no traceback is ever shown. Every page forbids loading anything from another origin (CSP).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web

from crawler.export.rows import row
from crawler.serve import files, pages, status
from crawler.serve.index import Index, item_of
from crawler.serve.query import BadQuery, Found, Query, parse, search
from crawler.state import exclusions

STATIC = Path(__file__).with_name("static")
_CSP = ("default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
T = TypeVar("T")


@dataclass
class Server:
    """What the handlers share: the index behind its thread, the folders, the token."""

    state_dir: Path
    images: Path
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    hosts: frozenset[str] = frozenset()
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="serve-index"))
    _index: Index | None = None

    async def db(self, work: Callable[[Index], T]) -> T:
        """Run `work(index)` on the database thread, with the index caught up first."""
        def call() -> T:
            if self._index is None:
                self._index = Index(self.state_dir)
            self._index.refresh()  # a stat when nothing was appended; else reads only the new records
            return work(self._index)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def close(self) -> None:
        def shut() -> None:
            if self._index is not None:
                self._index.close()
        self._pool.submit(shut).result()
        self._pool.shutdown()


@dataclass(frozen=True, slots=True)
class Page:
    query: Query
    cards: list[pages.Card]
    found: list[Found]
    next_after: tuple[float, int] | None
    total: int
    base_models: list[str]


def _page(server: Server, query: Query) -> Callable[[Index], Page]:
    def work(index: Index) -> Page:
        found, next_after = search(index.db, query)
        cards = []
        for f in found:
            record = index.record_at(f.at) or {}
            level = index.db.execute("SELECT level FROM images WHERE n = ?", (f.n,)).fetchone()
            cards.append(pages.Card(f.key, level[0] if level else 0, f.excluded, row(record, set(index.sources(f.key)))))
        total = index.db.execute("SELECT count(*) FROM images").fetchone()[0]
        return Page(query, cards, found, next_after, total, sorted(index.base_models))
    return work


def _query(request: web.Request) -> Query:
    multi = {k: request.query.getall(k) for k in request.query}
    for name, values in multi.items():
        if len(values) > 1 and name != "level":
            raise BadQuery(f"{name} is given {len(values)} times; give it once")
    return parse(dict(request.query), multi)


SERVER = web.AppKey("server", Server)


def _server(request: web.Request) -> Server:
    return request.app[SERVER]


async def gallery(request: web.Request) -> web.Response:
    server = _server(request)
    page = await server.db(_page(server, _query(request)))
    return _html(pages.gallery(page.query, page.cards, page.next_after, server.token, page.base_models, page.total))


async def api_images(request: web.Request) -> web.Response:
    server = _server(request)
    page = await server.db(_page(server, _query(request)))
    items = [{"id": c.fields.get("id"), "key": c.key, "url": f"/media/{quote(c.key, safe='')}",
              "thumbnail_url": f"/thumb/{quote(c.key, safe='')}", "page_url": f"/image/{quote(c.key, safe='')}",
              "level": pages.level_name(c.level), "excluded": c.excluded, "fields": c.fields} for c in page.cards]
    following = page.query.params(after=page.next_after) if page.next_after else None
    return web.json_response({"items": items, "next": f"/api/images?{following}" if following else None,
                              "total": page.total})


async def image(request: web.Request) -> web.Response:
    server = _server(request)
    key = request.match_info["key"]

    def work(index: Index) -> tuple[dict[str, Any], list[str], int, bool] | None:
        found = index.db.execute("SELECT at, level, EXISTS (SELECT 1 FROM excluded WHERE key = ?) FROM images "
                                 "WHERE key = ?", (key, key)).fetchone()
        if found is None:
            return None
        return index.record_at(found[0]) or {}, index.sources(key), found[1], bool(found[2])
    got = await server.db(work)
    if got is None:
        raise web.HTTPNotFound(text=f"no mirrored image {key}")
    record, sources, level, excluded = got
    return _html(pages.image_page(key, record, row(record, set(sources)), sources, level, excluded, server.token))


async def _file_of(request: web.Request) -> tuple[Path, dict[str, Any]]:
    server = _server(request)
    record = await server.db(lambda index: index.record(request.match_info["key"]))
    path = files.media_path(server.images, (record or {}).get("path"))
    if record is None or path is None:
        raise web.HTTPNotFound(text="no such file in this mirror")
    return path, record


async def media(request: web.Request) -> web.StreamResponse:
    path, _record = await _file_of(request)
    return web.FileResponse(path, headers={"Content-Type": files.content_type(path), "Cache-Control": "max-age=3600"})


async def thumb(request: web.Request) -> web.Response:
    path, record = await _file_of(request)
    item = item_of(record)
    body, kind = await asyncio.to_thread(files.thumbnail, _server(request).state_dir, path, record.get("sha256"),
                                         item.get("width"), item.get("height"))
    return web.Response(body=body, content_type=kind, headers={"Cache-Control": "max-age=86400"})


async def status_page(request: web.Request) -> web.Response:
    server = _server(request)
    now = await server.db(lambda index: status.read(index.db, index.manifest))
    return _html(status.page(now, server.token))


async def api_status(request: web.Request) -> web.Response:
    server = _server(request)
    now = await server.db(lambda index: status.read(index.db, index.manifest))
    return web.json_response(now.as_dict())


def _check_token(server: Server, given: object) -> None:
    if not isinstance(given, str) or not secrets.compare_digest(given.encode(), server.token.encode()):
        raise web.HTTPForbidden(text="missing or wrong token: reload the page and try again")


async def _change_exclusions(server: Server, keys: list[str], action: str) -> int:
    if action not in ("exclude", "include") or not keys or len(keys) > 10_000:
        raise BadQuery("give action exclude or include and 1 to 10000 keys")
    known = await server.db(lambda index: {k for k in keys if index.db.execute(
        "SELECT 1 FROM states WHERE key = ?", (k,)).fetchone()})
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise BadQuery(f"not an image of this mirror: {unknown[0][:40]}")
    change = exclusions.add if action == "exclude" else exclusions.remove
    try:
        now = await asyncio.to_thread(change, server.state_dir, keys)
    except exclusions.BadKey as err:
        raise BadQuery(str(err)) from None
    return len(now)


async def exclude_form(request: web.Request) -> web.Response:
    server = _server(request)
    form = await request.post()
    _check_token(server, form.get("token"))
    keys = [str(k) for k in form.getall("key", [])]
    if keys:
        await _change_exclusions(server, keys, str(form.get("action", "")))
    back = str(form.get("back") or "/")
    if not back.startswith("/") or back.startswith("//") or "\\" in back:
        back = "/"  # never redirect off this server
    raise web.HTTPSeeOther(back)


async def api_exclusions(request: web.Request) -> web.Response:
    server = _server(request)
    _check_token(server, request.headers.get("X-Token"))
    try:
        body = await request.json()
    except ValueError:
        raise BadQuery("the body must be JSON: {\"action\": \"exclude\"|\"include\", \"keys\": [...]}") from None
    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, (str, int)) for k in keys):
        raise BadQuery("keys must be a list of image keys")
    count = await _change_exclusions(server, [str(k) for k in keys], str(body.get("action", "")))
    return web.json_response({"excluded": count})


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html", charset="utf-8")


@web.middleware
async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    server = _server(request)
    if server.hosts and request.host.lower() not in server.hosts:
        return web.Response(status=421, text="this server answers only to its own address\n")
    try:
        response = await handler(request)
    except BadQuery as err:
        response = web.Response(status=400, text=f"{err}\n")
    except web.HTTPException as err:
        if err.status < 400:
            raise
        response = web.Response(status=err.status, text=(err.text or err.reason).splitlines()[0] + "\n")
    except Exception as err:
        print(f"serve: {request.method} {request.path}: {type(err).__name__}: {err}", flush=True)
        response = web.Response(status=500, text="internal error (see the server's output)\n")
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def make_app(server: Server) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=4 * 1024 * 1024)
    app[SERVER] = server
    app.router.add_get("/", gallery)
    app.router.add_get("/image/{key}", image)
    app.router.add_get("/media/{key}", media)
    app.router.add_get("/thumb/{key}", thumb)
    app.router.add_get("/status", status_page)
    app.router.add_get("/api/images", api_images)
    app.router.add_get("/api/status", api_status)
    app.router.add_post("/exclude", exclude_form)
    app.router.add_post("/api/exclusions", api_exclusions)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    app.on_cleanup.append(lambda _app: asyncio.to_thread(server.close))
    return app
