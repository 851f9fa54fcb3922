"""`SimThread`: a `SimServer` on its own event loop in a daemon thread, for sync code and subprocesses.

`with SimThread(cfg) as sim:` returns once the port is bound; exit stops the server and joins.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

from crawler.simulator.catalogue import Catalogue
from crawler.simulator.config import SimConfig
from crawler.simulator.log import RequestLog
from crawler.simulator.server import SimServer


class SimThread:
    """Same attributes as SimServer (`api_base`, `port`, `catalogue`, `log`, `ca_file`, `handshakes`)."""

    def __init__(self, cfg: SimConfig | None = None, catalogue: Catalogue | None = None) -> None:
        self.server = SimServer(cfg, catalogue)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="civitai-sim", daemon=True)

    @property
    def cfg(self) -> SimConfig:
        return self.server.cfg

    @property
    def catalogue(self) -> Catalogue:
        return self.server.catalogue

    @property
    def log(self) -> RequestLog:
        return self.server.log

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def origin(self) -> str:
        return self.server.origin

    @property
    def api_base(self) -> str:
        return self.server.api_base

    @property
    def ca_file(self) -> str | None:
        """With `SimConfig(tls=True)`: the PEM of the test CA to trust (removed at stop unless its path was given)."""
        return self.server.ca_file

    @property
    def handshakes(self) -> int:
        return self.server.handshakes

    def switch_backend(self) -> int:
        """See `SimServer.switch_backend` (a counter the server thread reads; safe from this one)."""
        return self.server.switch_backend()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            self._thread.join()
            raise RuntimeError("simulator failed to start") from self._failure

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass  # the loop already finished
        self._thread.join()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the starting thread, not lost in this one
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.server:
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> SimThread:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
