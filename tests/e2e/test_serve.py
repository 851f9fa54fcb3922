"""`serve` end to end: HTTP API, safety, and the page in a real headless Chromium (tests/e2e/serve_cdp.py)."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from conftest import cli, run_crawl
from PIL import Image
from serve_cdp import Browser
from serve_fixtures import HOSTILE, Served, get_json, served_fixture  # noqa: F401 - the `served` fixture

from crawler.export import rows as export_module
from crawler.serve import command
from crawler.serve.index import Index
from crawler.state import exclusions, report
from crawler.state.manifest import MANIFEST_NAME, ManifestWriter, iter_records

ARTIFACTS = Path(os.environ.get("SERVE_ARTIFACTS", "")) if os.environ.get("SERVE_ARTIFACTS") else None


async def _all_pages(served: Served, params: str, limit: int = 17) -> list[dict]:
    items, url = [], f"{served.url}/api/images?limit={limit}&{params}"
    while url:
        page = await get_json(url)
        assert len(page["items"]) <= limit
        items += page["items"]
        url = served.url + page["next"] if page["next"] else None
    return items


async def test_api_pages_through_every_done_image_once_newest_first(served):
    items = await _all_pages(served, "")
    keys = [i["key"] for i in items]
    assert len(keys) == len(set(keys)) and set(keys) == set(served.done()) and len(keys) > 90
    created = [i["fields"]["created_at"] for i in items]
    assert created == sorted(created, reverse=True)
    by_reactions = [i["fields"]["reactions"] for i in await _all_pages(served, "sort=reactions")]
    assert by_reactions == sorted(by_reactions, reverse=True) and len(by_reactions) == len(keys)
    first = items[0]
    assert first["url"] == f"/media/{first['key']}" and first["id"] == served.items[first["id"]]["id"]
    async with aiohttp.ClientSession() as session, session.get(served.url + first["url"]) as response:
        assert await response.read() == (served.root / first["fields"]["path"]).read_bytes()


async def test_api_filters_narrow_to_matching_images(served):
    everything = await _all_pages(served, "", limit=200)
    word = everything[0]["fields"]["prompt"].split(",")[0].split()[0]
    cases = {
        f"q={word}": lambda f: word in (f["prompt"] or "") + (f["negative_prompt"] or ""),
        "level=None": lambda f: f["nsfw_level"] == "None",
        "level=Mature&level=X": lambda f: f["nsfw_level"] in ("Mature", "X"),
        "type=image": lambda f: f["type"] == "image",
        f"base_model={everything[0]['fields']['base_model']}": lambda f: f["base_model"] == everything[0]["fields"]["base_model"],
        "min_reactions=100": lambda f: f["reactions"] >= 100,
        "min_width=1000": lambda f: f["width"] >= 1000,
        "since=2025-01-01&until=2025-02-28": lambda f: "2025-01-01" <= f["created_at"][:10] <= "2025-02-28",
    }
    for params, wanted in cases.items():
        got = {i["key"] for i in await _all_pages(served, params)}
        expected = {i["key"] for i in everything if wanted(i["fields"])}
        assert got == expected and 0 < len(got) < len(everything), params


async def test_bad_parameters_get_400_with_one_line(served):
    async with aiohttp.ClientSession() as session:
        for params in ("limit=0", "limit=x", "sort=best", "level=PG-99", "since=yesterday", "after=nope",
                       "min_width=-1", "frobnicate=1", "q=a&q=b"):
            for path in ("/api/images", "/"):
                async with session.get(f"{served.url}{path}?{params}") as response:
                    text = await response.text()
                    assert response.status == 400, (path, params)
                    assert text.count("\n") == 1 and "Traceback" not in text, text
        async with session.get(f"{served.url}/api/images?q=%22%20OR%20*%20NEAR(") as response:
            assert response.status == 200  # FTS5 syntax typed by a user is text, never a query error


async def test_status_api_counts_as_status_does_and_counts_exclusions(served):
    summary = report.summarise(served.root)
    got = await get_json(f"{served.url}/api/status")
    assert (got["done"], got["failed"], got["gone"]) == (summary.done, summary.failed, summary.gone)
    assert got["gone"] > 0 and got["failed_by_reason"] == dict(summary.failed_by_reason)
    assert got["runs"][0]["event"] == "end" and got["runs"][0]["reason"] == summary.last_run["reason"]
    assert sum(n for _, n in got["per_day"]) == summary.done and got["excluded"] == 0
    exclusions.add(served.root, list(served.done())[:3])
    got = await get_json(f"{served.url}/api/status")
    assert got["excluded"] == 3


async def test_image_page_shows_every_field_escaped(served):
    record = served.done()[served.hostile_key]
    async with aiohttp.ClientSession() as session, session.get(f"{served.url}/image/{served.hostile_key}") as response:
        page = await response.text()
    assert response.status == 200
    assert "<script>window.__pwned" not in page and "onerror=\"window" not in page
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page
    row = export_module.row(record)
    for name, value in row.items():
        if name != "meta_json" and value not in (None, [], ""):
            assert f'class="f-{name}"' in page, name
    assert record["sha256"] in page and f'https://civitai.com/images/{record["id"]}' in page
    assert '<pre id="meta">' in page and "negativePrompt" in page
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


async def test_files_outside_the_mirror_are_never_served(served, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    done = list(served.done().values())
    linked = done[-1]
    (served.root / linked["path"]).unlink()
    (served.root / linked["path"]).symlink_to(secret)  # a link inside the mirror pointing out of it
    writer = ManifestWriter(served.root / MANIFEST_NAME)
    writer.append({**done[-2], "path": "../secret.txt"})  # a record we did not write
    writer.close()
    async with aiohttp.ClientSession() as session:
        for path in (f"/media/{linked['id']}", f"/thumb/{linked['id']}", f"/media/{done[-2]['id']}",
                     "/media/..%2F..%2Fsecret.txt", "/static/..%2F..%2Fapp.py", "/static/%2e%2e/app.py",
                     "/image/..%2Fmanifest.jsonl"):
            async with session.get(served.url + path) as response:
                body = await response.text()
                assert response.status == 404 and "secret" not in body and "import" not in body, path


async def test_a_write_without_the_token_is_refused(served):
    key = next(iter(served.done()))
    async with aiohttp.ClientSession() as session:
        for token in (None, "", "x" * 43):
            form = {"key": key, "action": "exclude"} | ({"token": token} if token is not None else {})
            async with session.post(f"{served.url}/exclude", data=form, allow_redirects=False) as response:
                assert response.status == 403
            headers = {"X-Token": token} if token is not None else {}
            async with session.post(f"{served.url}/api/exclusions", json={"action": "exclude", "keys": [key]},
                                    headers=headers) as response:
                assert response.status == 403
        assert exclusions.load(served.root) == frozenset()
        async with session.get(f"{served.url}/", headers={"Host": "attacker.example:80"}) as response:
            assert response.status == 421 and served.token not in await response.text()
        async with session.post(f"{served.url}/api/exclusions", json={"action": "exclude", "keys": [key]},
                                headers={"X-Token": served.token}) as response:
            assert response.status == 200
    assert exclusions.load(served.root) == {key}


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


async def test_index_reads_only_what_the_manifest_gained(served):
    index = Index(served.root)  # a second index over the same state dir: caught up already by the server
    try:
        assert index.refresh() == 0
        record = {**served.done()[served.real_keys[0]], "id": 999_000_001, "uuid": "new-one"}
        line = orjson.dumps(record) + b"\n"
        _append(served.root / MANIFEST_NAME, line[:40])  # a crawl half way through writing a line
        assert index.refresh() == 0 and index.record("999000001") is None
        _append(served.root / MANIFEST_NAME, line[40:])
        assert index.refresh() == 1 and index.record("999000001") == record
        page = await get_json(f"{served.url}/api/images?limit=200&sort=reactions")
        assert "999000001" in {i["key"] for i in page["items"]}
        # A rewritten manifest (compaction) is read again from its start.
        manifest = served.root / MANIFEST_NAME
        manifest.with_name("m.tmp").write_bytes(manifest.read_bytes())
        manifest.with_name("m.tmp").replace(manifest)
        assert index.refresh() == sum(1 for _ in iter_records(manifest))
    finally:
        index.close()


async def test_status_follows_a_running_crawl(sim_factory, tmp_path):
    root = tmp_path / "live"
    root.mkdir()
    runner, url = await command.start(root, root, "127.0.0.1", 0)
    seen: list[dict] = []
    try:
        async with sim_factory(images=90, seed=41) as sim:
            crawl = asyncio.create_task(run_crawl(root, sim.api_base, browsing_level=31, cdn_rps=40, concurrency=2))
            while not crawl.done():
                seen.append(await get_json(f"{url}api/status"))
                await asyncio.sleep(0.1)
            await crawl
        final = await get_json(f"{url}api/status")
    finally:
        await runner.cleanup()
    during = [s for s in seen if s["running"]]
    assert during and any(0 < s["done"] < final["done"] and s["rate"] > 0 for s in during)
    assert [s["done"] for s in seen] == sorted(s["done"] for s in seen)
    assert not final["running"] and final["done"] == report.summarise(root).done > 0


@pytest.fixture
async def browser():
    started = await Browser().start()
    try:
        yield started
    finally:
        await started.close()


def _only_local(served: Served, browser: Browser) -> None:
    outside = [u for u in browser.requests if not u.startswith(served.url + "/") and not u.startswith(("data:", "about:"))]
    assert browser.requests and not outside, outside[:5]


async def _shot(browser: Browser, name: str) -> None:
    if ARTIFACTS is not None:
        await browser.screenshot(ARTIFACTS / f"{name}.png")


async def test_gallery_in_chromium_loads_thumbnails_searches_and_blurs(served, browser):
    await browser.open(served.url + "/")
    await browser.wait_for("[...document.images].length > 0 && [...document.images].every(i => i.complete)")
    widths = await browser.js("Object.fromEntries([...document.querySelectorAll('.card')].map("
                              "c => [c.dataset.key, c.querySelector('img').naturalWidth]))")
    assert len(widths) == 60 and all(w > 0 for w in widths.values()), widths
    assert all(widths[k] == 320 for k in served.real_keys)
    async with aiohttp.ClientSession() as session:
        for key in served.real_keys:  # decoded and resized by Pillow, not placeholders
            async with session.get(f"{served.url}/thumb/{key}") as response:
                assert response.content_type == "image/jpeg"
                assert Image.open(io.BytesIO(await response.read())).width == 320
    await _shot(browser, "gallery")

    # Blur: above PG-13 by default, off when the chooser says so, and a click reveals one image.
    blurred = await browser.js("[...document.querySelectorAll('.card.blurred')].map(c => +c.dataset.level)")
    levels = await browser.js("[...document.querySelectorAll('.card')].map(c => +c.dataset.level)")
    assert blurred and len(blurred) == sum(1 for v in levels if v > 1)
    assert await browser.js("getComputedStyle(document.querySelector('.card.blurred img')).filter.startsWith('blur')")
    await browser.js("document.querySelector('.card.blurred img').click()")
    assert await browser.js("document.querySelectorAll('.card.blurred').length") == len(blurred) - 1
    await browser.js("const s = document.getElementById('blur'); s.value = '3'; s.dispatchEvent(new Event('change'))")
    assert await browser.js("document.querySelectorAll('.card.blurred').length") == 0

    # Search by typing: the grid narrows to images whose prompt has the word, without a page load.
    word = served.done()[served.real_keys[0]]["item"]["meta"]["prompt"].split(",")[0].split()[0]
    await browser.js("window.__samePage = true; document.getElementById('q').focus()")
    await browser.type(word)
    typed = f"new URL(location.href).searchParams.get('q') === {json.dumps(word)}"
    await browser.wait_for(f"{typed} && document.body.dataset.updated")
    prompts = await browser.js("[...document.querySelectorAll('.card .prompt')].map(p => p.textContent)")
    expected = await _all_pages(served, f"q={word}", limit=200)
    assert await browser.js("window.__samePage === true")
    assert 0 < len(prompts) == min(60, len(expected)) < len(served.done()) and all(word in p for p in prompts)
    await _shot(browser, "search")
    _only_local(served, browser)


async def test_image_page_in_chromium_shows_hostile_prompt_as_text(served, browser):
    await browser.open(f"{served.url}/image/{served.hostile_key}")
    assert await browser.js("document.querySelector('.f-prompt').textContent") == HOSTILE
    assert await browser.js("window.__pwned === undefined")
    await _shot(browser, "image")
    _only_local(served, browser)


async def test_excluding_two_images_in_chromium_leaves_them_out_of_export(served, browser, tmp_path):
    await browser.open(served.url + "/")
    keys = await browser.js("[...document.querySelectorAll('.card')].slice(0, 2).map(c => c.dataset.key)")
    for key in keys:
        await browser.js(f"document.querySelector('.card[data-key=\"{key}\"] input[type=checkbox]').click()")
    await browser.navigating("window.__before = true; document.getElementById('exclude').click()")
    await browser.wait_for("window.__before === undefined && document.readyState === 'complete'")
    assert await browser.js("[...document.querySelectorAll('.card.excluded')].map(c => c.dataset.key)") == keys
    assert exclusions.load(served.root) == frozenset(keys)
    await _shot(browser, "excluded")
    _only_local(served, browser)
    result = cli("export", "--out", str(served.root), "--format", "jsonl", "--to", str(tmp_path / "d.jsonl"))
    assert result.returncode == 0, result.stderr
    exported = {json.loads(line)["key"] for line in (tmp_path / "d.jsonl").read_text().splitlines()}
    assert exported == set(served.done()) - set(keys)


async def test_a_form_posted_from_another_site_is_refused(served, browser):
    key = next(iter(served.done()))
    page = (f'<form method="post" action="{served.url}/exclude"><input name="key" value="{key}">'
            f'<input name="action" value="exclude"></form><script>document.forms[0].submit()</script>')

    async def attacker(_request: web.Request) -> web.Response:
        return web.Response(content_type="text/html", text=page)
    evil = web.Application()
    evil.router.add_get("/", attacker)
    runner = web.AppRunner(evil)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        await browser.send("Page.navigate", url=f"http://127.0.0.1:{port}/")
        await browser.wait_for(f"location.href.startsWith({json.dumps(served.url)}) && document.readyState === 'complete'")
        assert "token" in await browser.js("document.body.innerText")
    finally:
        await runner.cleanup()
    assert exclusions.load(served.root) == frozenset()
