"""`SimServer`: the simulated CivitAI (API and CDN) as an aiohttp app on a loopback port.

`async with SimServer(cfg) as sim:` binds, serves, and on exit stops every handler, stalls included.
With `SimConfig(tls=True)` both are served over HTTPS by a test CA made at start (`sim.ca_file` holds its
PEM; `sim.handshakes` counts TLS handshakes); `start` raises TlsUnavailable when that cannot be done.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from crawler.simulator.answer import error
from crawler.simulator.api import ImagesEndpoint
from crawler.simulator.catalogue import Catalogue
from crawler.simulator.cdn import CdnEndpoint
from crawler.simulator.config import SITES, SimConfig, require_loopback
from crawler.simulator.cursors import Cursors
from crawler.simulator.faults import FaultPicker
from crawler.simulator.hostile import DOTS_RESOLVED
from crawler.simulator.items import HASH1
from crawler.simulator.log import ENTRY_KEY, LogEntry, RequestLog
from crawler.simulator.models_api import ModelsEndpoint
from crawler.simulator.shapes import B2_PREFIX
from crawler.simulator.sites import BLOCKED_MESSAGE
from crawler.simulator.tls import ServerTls

_CDN_PREFIXES = (f"/{HASH1}/", B2_PREFIX + "/")
_SITE_PREFIXES = frozenset(f"/{site}" for site in SITES)
#: Not CivitAI's: the test's lever for a feed-backend switch (see `SimServer.switch_backend`).
SWITCH_PATH = "/_sim/switch-backend"
#: Not CivitAI's: `{"handshakes": N}`, the TLS handshakes so far (0 over plain HTTP), for benchmarks.
TLS_STATS_PATH = "/_sim/tls"


class SimServer:
    """Serves `catalogue` under `api_base`; every request lands in `log`."""

    def __init__(self, cfg: SimConfig | None = None, catalogue: Catalogue | None = None) -> None:
        self.cfg = cfg if cfg is not None else SimConfig()
        require_loopback(self.cfg.host)
        self.catalogue = catalogue if catalogue is not None else Catalogue(self.cfg)
        self.log = RequestLog()
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._images: ImagesEndpoint | None = None
        self._tls: ServerTls | None = None

    @property
    def origin(self) -> str:
        host = f"[{self.cfg.host}]" if ":" in self.cfg.host else self.cfg.host
        return f"{'https' if self.cfg.tls else 'http'}://{host}:{self.port}"

    @property
    def ca_file(self) -> str | None:
        """With `tls`, once started: the PEM file of the CA that signed the server's certificate."""
        return self._tls.ca_file if self._tls is not None else None

    @property
    def handshakes(self) -> int:
        """TLS handshakes the server began since start (0 without `tls`)."""
        return self._tls.handshakes if self._tls is not None else 0

    @property
    def api_base(self) -> str:
        return f"{self.origin}/api/v1"

    async def start(self) -> None:
        self._closing = asyncio.Event()
        faults = FaultPicker(self.cfg.faults, self.cfg.seed)
        cursors = Cursors(self.cfg.cursor_style, self.cfg.seed)
        images = ImagesEndpoint(self.catalogue, cursors, faults, self.cfg.faults, self.cfg)
        self._images = images
        cdn = CdnEndpoint(self.catalogue, faults, self.cfg.faults, self._closing, self.cfg.real_shapes)
        app = web.Application(middlewares=[self._middleware()])
        models = ModelsEndpoint(self.catalogue, cursors, faults, self.cfg.error_body)
        # With `sites`, each API path is also served under `/{site}` for clients that reach only 127.0.0.1.
        prefixes = ["", f"/{{site:{'|'.join(SITES)}}}"] if self.cfg.sites else [""]
        for prefix in prefixes:
            app.router.add_get(prefix + "/api/v1/images", images.handle)
            app.router.add_get(prefix + "/api/v1/models", models.list)
            app.router.add_get(prefix + "/api/v1/models/{model_id}", models.model)
            app.router.add_get(prefix + "/api/v1/model-versions/{version_id}", models.version)
        app.router.add_post(SWITCH_PATH, self._switch)
        app.router.add_get(TLS_STATS_PATH, self._tls_stats)
        app.router.add_get(B2_PREFIX + "/{uuid}/{name}", cdn.b2)
        app.router.add_get(B2_PREFIX + "/{uuid}/{params}/{name}", cdn.b2)
        app.router.add_get("/{hash1}/{uuid}/{params}/{name}", cdn.handle)
        # Where the hostile `traversal-dots` URL leads, unresolved (urllib) and resolved (aiohttp).
        app.router.add_get("/{hash1}/{uuid}/{params}/{rest:.+}", cdn.traversed)
        app.router.add_get(DOTS_RESOLVED, cdn.traversed)
        # handler_cancellation: a client that hangs up cancels its handler (a stalled body included).
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
        if self.cfg.tls:
            self._tls = ServerTls.make(self.cfg.tls_ca_file)
        await runner.setup()
        site = web.TCPSite(runner, self.cfg.host, self.cfg.port,
                           ssl_context=self._tls.context if self._tls is not None else None)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._drop_tls()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]

    def switch_backend(self) -> int:
        """CivitAI moves `/images` to a new feed backend: every cursor issued so far answers 400 from now on.

        Needs `SimConfig(stale_cursors=True)` (RuntimeError otherwise) and a started server; returns
        the new backend generation. `POST /_sim/switch-backend` does the same over HTTP.
        """
        if self._images is None:
            raise RuntimeError("the simulator is not started")
        return self._images.generations.switch()

    async def _switch(self, request: web.Request) -> web.Response:
        try:
            generation = self.switch_backend()
        except RuntimeError as exc:
            return web.json_response({"message": str(exc)}, status=409)
        return web.json_response({"generation": generation})

    async def _tls_stats(self, request: web.Request) -> web.Response:
        return web.json_response({"handshakes": self.handshakes})

    async def stop(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self._drop_tls()

    def _drop_tls(self) -> None:
        # The CA file outlives the server only when the caller chose its path.
        if self._tls is not None:
            self._tls.close()

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _middleware(self) -> Middleware:
        log = self.log
        latency = self.cfg.faults.latency_ms / 1000.0
        blocked = self.cfg.region == "blocked"
        error_key = self.cfg.error_body

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            path = request.path
            api = path.startswith("/api/") or path.partition("/api/")[0] in _SITE_PREFIXES
            kind = "api" if api else "cdn" if path.startswith(_CDN_PREFIXES) else "other"
            query = request.query
            entry = LogEntry(
                t=time.monotonic(),
                kind=kind,
                path=path,
                query=dict(query) if query else {},
                auth="Authorization" in request.headers or "token" in query,
                user_agent=request.headers.get("User-Agent", ""),
                accept=request.headers.get("Accept", ""),
                host=request.headers.get("Host", ""),
            )
            log.append(entry)
            request[ENTRY_KEY] = entry
            if latency:
                await asyncio.sleep(latency)
            if blocked and kind == "api":
                entry.status = 451
                return error(451, BLOCKED_MESSAGE, error_key)
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                entry.status = exc.status
                raise
            entry.status = 0 if entry.fault == "reset" else response.status
            if entry.kind == "cdn" and type(response) is web.Response and isinstance(response.body, bytes):
                # A whole body sent at once; streamed ones count their own writes as they go.
                entry.bytes_sent = len(response.body)
            return response

        return record
