"""The status page in a real Chromium follows a running crawl by itself (issue 16).

A real `civitai-mirror crawl` subprocess, slowed by --cdn-rps, fills a mirror from the simulator
while `serve` serves it; the browser opens /status once and the test only reads the page from then
on: the done count it shows must grow, which happens only if the page refreshes itself. Screenshots
go to $SERVE_ARTIFACTS when set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import flags_list
from serve_cdp import Browser
from serve_fixtures import get_json

from crawler.serve import command

ARTIFACTS = Path(os.environ["SERVE_ARTIFACTS"]) if os.environ.get("SERVE_ARTIFACTS") else None
DONE = "+(document.getElementById('n-done') || {textContent: '-1'}).textContent"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    started = await Browser().start()
    try:
        yield started
    finally:
        await started.close()


async def _shown(browser: Browser, expression: str, within: float) -> int:
    """The done count once `expression` (of `done`, the count shown) holds; the page may be reloading meanwhile."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.suppress(RuntimeError):  # evaluated while the page reloads: ask again
            done = await browser.js(DONE)
            if isinstance(done, int) and await browser.js(f"(done => {expression})({done})"):
                return done
        await asyncio.sleep(0.1)
    raise AssertionError(f"the status page never showed {expression} within {within:.0f} s")


async def _shot(browser: Browser, name: str) -> None:
    if ARTIFACTS is not None:
        await browser.screenshot(ARTIFACTS / f"{name}.png")


@pytest.mark.timeout(120)
async def test_status_page_updates_by_itself_while_a_crawl_runs(sim_factory, tmp_path, browser):
    root = tmp_path / "m"
    root.mkdir()
    runner, url = await command.start(root, root, "127.0.0.1", 0)
    log = (tmp_path / "crawl.log").open("wb")  # closed after the crawl ends
    async with sim_factory(images=400, seed=43) as sim:
        # 3 images/s: the crawl outlasts the test, and the count moves between two refreshes of the page.
        crawl = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "crawler", "crawl", "--out", str(root),
            *flags_list(sim.api_base, cdn_rps=3, concurrency=2, limit=20, browsing_level=31),
            stdout=log, stderr=log, start_new_session=True)
        try:
            # The page refreshes itself while a crawl runs (the crawl wrote a start record and is writing):
            # open it once the crawl is under way, as a user checking on a crawl would.
            deadline = asyncio.get_running_loop().time() + 40
            while not (await get_json(f"{url}api/status"))["running"]:
                assert crawl.returncode is None, (tmp_path / "crawl.log").read_text()
                assert asyncio.get_running_loop().time() < deadline, "the crawl never showed as running"
                await asyncio.sleep(0.2)
            await browser.open(f"{url}status")
            # Opened once; from here on the test never navigates, it only reads what the page shows.
            first = await _shown(browser, "done > 0 && !!document.getElementById('running')", within=40)
            await browser.js("window.__opened = true")
            await _shot(browser, "status-running-1")
            later = await _shown(browser, f"done > {first}", within=30)
            await _shot(browser, "status-running-2")
            assert later > first
            # The page reloaded itself (the marker set on the first load is gone) and still says a crawl runs.
            assert await browser.js("window.__opened === undefined")
            assert await browser.js("!!document.getElementById('running')")
            assert crawl.returncode is None, "the crawl ended before the page was seen updating"
        finally:
            with contextlib.suppress(ProcessLookupError):
                crawl.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(crawl.wait(), 20)
            except TimeoutError:
                crawl.kill()
                await crawl.wait()
            await runner.cleanup()
            log.close()
