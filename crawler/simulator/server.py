"""`SimServer`: the simulated CivitAI (API and CDN) as an aiohttp app on a loopback port.

`async with SimServer(cfg) as sim:` binds, serves, and on exit stops every handler, stalls included.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

from aiohttp import web

from .api import ImagesEndpoint
from .catalogue import Catalogue
from .cdn import CdnEndpoint
from .config import SimConfig, require_loopback
from .cursors import Cursors
from .faults import FaultPicker
from .hostile import DOTS_RESOLVED
from .items import HASH1
from .log import ENTRY_KEY, LogEntry, RequestLog
from .models_api import ModelsEndpoint

_CDN_PREFIX = f"/{HASH1}/"


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

    @property
    def origin(self) -> str:
        host = f"[{self.cfg.host}]" if ":" in self.cfg.host else self.cfg.host
        return f"http://{host}:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.origin}/api/v1"

    async def start(self) -> None:
        self._closing = asyncio.Event()
        faults = FaultPicker(self.cfg.faults, self.cfg.seed)
        cursors = Cursors(self.cfg.cursor_style, self.cfg.seed)
        images = ImagesEndpoint(self.catalogue, cursors, faults, self.cfg.faults, self.cfg)
        cdn = CdnEndpoint(self.catalogue, faults, self.cfg.faults, self._closing)
        app = web.Application(middlewares=[self._middleware()])
        app.router.add_get("/api/v1/images", images.handle)
        models = ModelsEndpoint(self.catalogue, cursors, faults)
        app.router.add_get("/api/v1/models", models.list)
        app.router.add_get("/api/v1/models/{model_id}", models.model)
        app.router.add_get("/api/v1/model-versions/{version_id}", models.version)
        app.router.add_get("/{hash1}/{uuid}/{params}/{name}", cdn.handle)
        # Where the hostile `traversal-dots` URL leads, unresolved (urllib) and resolved (aiohttp).
        app.router.add_get("/{hash1}/{uuid}/{params}/{rest:.+}", cdn.traversed)
        app.router.add_get(DOTS_RESOLVED, cdn.traversed)
        # handler_cancellation: a client that hangs up cancels its handler (a stalled body included).
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.cfg.host, self.cfg.port)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _middleware(self) -> web.Middleware:
        log = self.log
        latency = self.cfg.faults.latency_ms / 1000.0

        @web.middleware
        async def record(request: web.Request, handler: web.Handler) -> web.StreamResponse:
            path = request.path
            kind = "api" if path.startswith("/api/") else "cdn" if path.startswith(_CDN_PREFIX) else "other"
            query = request.query
            entry = LogEntry(
                t=time.monotonic(),
                kind=kind,
                path=path,
                query=dict(query) if query else {},
                auth="Authorization" in request.headers or "token" in query,
                user_agent=request.headers.get("User-Agent", ""),
                host=request.headers.get("Host", ""),
            )
            log.append(entry)
            request[ENTRY_KEY] = entry
            if latency:
                await asyncio.sleep(latency)
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
