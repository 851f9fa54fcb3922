"""Headless Chromium driven over the Chrome DevTools Protocol with aiohttp's websocket client.

Chosen over selenium: no new dependency and no chromedriver version to match, and CDP shows every
network request the page makes, so a test can assert that the page never leaves 127.0.0.1.
`Browser.start()` fails the test (with the command that installs it) when no Chromium exists:
a missing prerequisite under `make test` is a failure, never a skip.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

# What Chromium answers when the page it was asked about navigated away meanwhile.
NAVIGATED = ("navigated or closed", "Execution context was destroyed", "Cannot find context")
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
INSTALL = "apt-get install -y chromium (Debian/Ubuntu), or run `make test`, which installs it"


def chromium_path() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


class Browser:
    """One page of a fresh Chromium profile; `requests` lists every URL the page asked for."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._profile = tempfile.TemporaryDirectory(prefix="serve-chromium-", ignore_cleanup_errors=True)
        self._process: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> Browser:
        binary = chromium_path()
        if binary is None:
            pytest.fail(f"no Chromium to run the browser tests: {INSTALL}")
        profile = Path(self._profile.name)
        self._process = subprocess.Popen(  # noqa: ASYNC220 - returns at once; Chromium runs beside the loop
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--metrics-recording-only",
             "--disable-breakpad", "--disable-crash-reporter",
             "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
             f"--user-data-dir={profile}", "--window-size=1280,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Chromium ({binary}) did not start its DevTools endpoint")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        page = next(t for t in targets if t.get("type") == "page")
        self._ws = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        await self.send("Network.enable")
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        return self

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        if self._process is not None:
            # Chromium's helpers (renderer, GPU, zygote) share the group we started it in: end them all.
            group = self._process.pid
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
                self._process.wait(10)
        self._profile.cleanup()

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            data = orjson.loads(message.data)
            if "id" in data and data["id"] in self._waiting:
                self._waiting.pop(data["id"]).set_result(data)
            elif data.get("method") == "Network.requestWillBeSent":
                self.requests.append(data["params"]["request"]["url"])

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        await self._ws.send_str(orjson.dumps({"id": ident, "method": method, "params": params}).decode())
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def js(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited)."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('text')} "
                               f"{result['exceptionDetails'].get('exception', {}).get('description', '')}")
        return result["result"].get("value")

    async def navigating(self, expression: str) -> None:
        """Run an expression that starts a navigation (a form submit): the page may be gone before the
        answer comes back, which is then no error."""
        try:
            await self.js(expression)
        except RuntimeError as e:
            if not any(words in str(e) for words in NAVIGATED):
                raise

    async def wait_for(self, expression: str, within: float = 15) -> Any:
        deadline = time.monotonic() + within
        while True:
            try:
                value = await self.js(expression)
            except RuntimeError as e:  # asked while the page was navigating: ask the next page
                if not any(words in str(e) for words in NAVIGATED):
                    raise
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for: {expression}")
            await asyncio.sleep(0.05)

    async def open(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for(f"document.readyState === 'complete' && location.href.startsWith({orjson.dumps(url).decode()})")

    async def type(self, text: str) -> None:
        """Key presses into the focused element, as a user types them."""
        for char in text:
            await self.send("Input.dispatchKeyEvent", type="keyDown", text=char)
            await self.send("Input.dispatchKeyEvent", type="keyUp")

    async def screenshot(self, to: Path) -> None:
        data = await self.send("Page.captureScreenshot", format="png")
        to.parent.mkdir(parents=True, exist_ok=True)
        to.write_bytes(base64.b64decode(data["data"]))  # noqa: ASYNC240 - a test artifact, once
