"""The CivitAI simulator over real sockets: paging, filters, cursors, CDN sizes and every fault.

Each test asserts one behaviour the crawler's own tests rely on; all bind 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import signal
import subprocess
import sys
import time
import urllib.request
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest

from crawler.simulator import Catalogue, FaultConfig, RequestLog, SimConfig, SimServer, SimThread
from crawler.simulator import cli as sim_cli
from crawler.simulator.hostile import HOSTILE, hostile_items
from crawler.simulator.log import LogEntry
from crawler.simulator.models_query import parse_model_query
from crawler.simulator.options import parse_options
from crawler.simulator.query import parse_query

ALL = {"browsingLevel": "31"}
REPO = Path(__file__).resolve().parents[2]
# The fields of the sample page's items (shared/samples/images-page.json), plus `thumbnail`.
FIELDS = {"id", "url", "hash", "width", "height", "nsfwLevel", "type", "nsfw", "browsingLevel", "createdAt", "postId",
          "stats", "meta", "username", "baseModel", "modelVersionIds", "thumbnail"}


def sim(images: int = 400, faults: FaultConfig | None = None, **kw: Any) -> SimServer:
    return SimServer(SimConfig(images=images, faults=faults or FaultConfig(), **kw))


async def get_json(session: aiohttp.ClientSession, url: str, params: dict[str, str]) -> dict[str, Any]:
    async with session.get(url, params=params) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def walk(
    session: aiohttp.ClientSession, api_base: str, params: dict[str, str], follow_next_page: bool = False
) -> list[dict[str, Any]]:
    """Every page of a query, following nextCursor (or nextPage's query) until the feed ends."""
    pages = []
    query = dict(params)
    for _ in range(10_000):
        page = await get_json(session, api_base + "/images", query)
        pages.append(page)
        metadata = page["metadata"]
        if follow_next_page:
            if "nextPage" not in metadata:
                break
            query = dict(parse_qsl(urlsplit(metadata["nextPage"]).query))
        else:
            cursor = metadata.get("nextCursor")
            if cursor is None:
                break
            query = {**params, "cursor": str(cursor)}
    return pages


def ids_of(pages: list[dict[str, Any]]) -> list[int]:
    return [item["id"] for page in pages for item in page["items"]]


# --- paging and filters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [{}, ALL, {"type": "video", **ALL}, {"nsfw": "true"}, {"sort": "Newest", "nsfw": "Soft"}, {"sort": "Random"}],
    ids=["default-pg", "all-levels", "videos", "nsfw-true", "newest-soft", "random"],
)
async def test_paging_returns_exactly_the_expected_ids(params: dict[str, str]) -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        pages = await walk(session, server.api_base, {**params, "limit": "37"})
        ids = ids_of(pages)
        expected = server.catalogue.expected(params)
    assert len(ids) == len(set(ids)), "a fault-free feed has no duplicates"
    assert set(ids) == set(expected)
    assert expected, "the query should match something"
    assert "nextCursor" not in pages[-1]["metadata"] and "nextPage" not in pages[-1]["metadata"]


async def test_username_filter_returns_only_that_creator() -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        name = server.catalogue.items[0]["username"]
        pages = await walk(session, server.api_base, {"username": name, **ALL, "limit": "5"})
        items = [item for page in pages for item in page["items"]]
        expected = server.catalogue.expected({"username": name, **ALL})
    assert {i["id"] for i in items} == set(expected)
    assert {i["username"] for i in items} == {name}
    assert 0 < len(items) < len(server.catalogue.items)


async def test_default_is_pg_only_and_about_half_the_catalogue() -> None:
    async with sim(images=1000) as server, aiohttp.ClientSession() as session:
        pg = await walk(session, server.api_base, {"limit": "200"})
        items = [item for page in pg for item in page["items"]]
    assert {i["browsingLevel"] for i in items} == {1}
    assert {i["nsfwLevel"] for i in items} == {"None"} and not any(i["nsfw"] for i in items)
    assert 350 < len(items) < 650


async def test_filters_by_post_model_version_base_model_and_image() -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        item = next(i for i in server.catalogue.items if i["modelVersionIds"])
        cases = {
            "postId": (str(item["postId"]), lambda i: i["postId"] == item["postId"]),
            "modelVersionId": (str(item["modelVersionIds"][0]), lambda i: item["modelVersionIds"][0] in i["modelVersionIds"]),
            "baseModels": (item["baseModel"], lambda i: i["baseModel"] == item["baseModel"]),
            "imageId": (str(item["id"]), lambda i: i["id"] == item["id"]),
        }
        for name, (value, keep) in cases.items():
            pages = await walk(session, server.api_base, {name: value, **ALL})
            want = {i["id"] for i in server.catalogue.items if keep(i)}
            assert set(ids_of(pages)) == want == set(server.catalogue.expected({name: value, **ALL})), name


@pytest.mark.parametrize("limit", ["201", "abc", "-1", "1.5"])
async def test_bad_limit_is_http_400_with_json_error(limit: str) -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        async with session.get(server.api_base + "/images", params={"limit": limit}) as response:
            assert response.status == 400
            assert "error" in await response.json()
        async with session.get(server.api_base + "/images", params={"limit": "200"}) as response:
            assert response.status == 200


async def test_cursor_never_issued_is_http_400() -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        first = await get_json(session, server.api_base + "/images", {"limit": "10"})
        good = first["metadata"]["nextCursor"]
        for bad in ("garbage", "10|123", "99999999|1"):
            async with session.get(server.api_base + "/images", params={"limit": "10", "cursor": bad}) as response:
                assert response.status == 400, bad
        async with session.get(server.api_base + "/images", params={"limit": "10", "cursor": good}) as response:
            assert response.status == 200


async def test_next_page_repeats_every_request_param_and_the_cursor() -> None:
    params = {"limit": "3", "sort": "Most Comments", "withMeta": "true", "browsingLevel": "31", "token": "k"}
    async with sim() as server, aiohttp.ClientSession() as session:
        page = await get_json(session, server.api_base + "/images", params)
    next_page = urlsplit(page["metadata"]["nextPage"])
    assert f"{next_page.scheme}://{next_page.netloc}/api/v1" == server.api_base
    assert dict(parse_qsl(next_page.query)) == {**params, "cursor": page["metadata"]["nextCursor"]}
    assert "%7C" in next_page.query, "the cursor is URL-encoded"


async def test_null_cursor_still_completes_via_next_page() -> None:
    async with sim(faults=FaultConfig(null_cursor=1.0)) as server, aiohttp.ClientSession() as session:
        pages = await walk(session, server.api_base, {"limit": "25"}, follow_next_page=True)
        expected = server.catalogue.expected()
    assert all(p["metadata"]["nextCursor"] is None for p in pages[:-1])
    assert len(pages) > 3
    assert set(ids_of(pages)) == set(expected)


@pytest.mark.parametrize("style", ["offset", "number", "feed"])
async def test_each_cursor_style_pages_to_the_end(style: str) -> None:
    async with sim(cursor_style=style) as server, aiohttp.ClientSession() as session:
        pages = await walk(session, server.api_base, {"limit": "30", **ALL})
        expected = server.catalogue.expected(ALL)
    cursor = pages[0]["metadata"]["nextCursor"]
    if style == "number":
        assert isinstance(cursor, int)
    elif style == "feed":
        assert isinstance(cursor, str) and cursor.startswith("feed:")
    else:
        assert isinstance(cursor, str) and "|" in cursor
    assert set(ids_of(pages)) == set(expected)


async def test_hidden_items_give_short_and_empty_pages_but_the_feed_completes() -> None:
    async with sim(hidden=1.0) as server, aiohttp.ClientSession() as session:
        params = {"limit": "20", "sort": "Newest", **ALL}
        pages = await walk(session, server.api_base, params)
        expected = server.catalogue.expected(params)
    sizes = [len(p["items"]) for p in pages[:-1]]
    assert 0 in sizes, "a run of hidden items should leave a page empty"
    assert any(0 < n < 20 for n in sizes)
    assert all("nextCursor" in p["metadata"] for p in pages[:-1])
    assert set(ids_of(pages)) == set(expected)
    assert len(expected) == 400


async def test_duplicate_fault_repeats_an_item_of_the_previous_page() -> None:
    async with sim(faults=FaultConfig(duplicate=1.0)) as server, aiohttp.ClientSession() as session:
        pages = await walk(session, server.api_base, {"limit": "20", **ALL})
        expected = server.catalogue.expected(ALL)
    ids = ids_of(pages)
    assert len(ids) > len(set(ids))
    assert set(ids) == set(expected)
    for previous, page in itertools.pairwise(pages):
        assert page["items"][0]["id"] in {i["id"] for i in previous["items"]}


async def test_items_have_the_sample_fields_and_urls_on_the_simulator() -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        with_meta = await walk(session, server.api_base, {"withMeta": "true", "limit": "200", **ALL})
        without = await get_json(session, server.api_base + "/images", {"limit": "200", **ALL})
    items = [i for p in with_meta for i in p["items"]]
    assert all(set(i) >= FIELDS for i in items)
    assert all(i["url"].startswith(server.origin + "/xG1nkqKTMzGDvpLrqFT7WA/") for i in items)
    assert any("/original=true/" in i["url"] for i in items) and any("/width=" in i["url"] for i in items)
    assert all(isinstance(i["nsfwLevel"], str) for i in items)
    assert all(i["meta"] is None for i in without["items"])
    with_meta_share = sum(i["meta"] is not None for i in items) / len(items)
    assert 0.7 < with_meta_share < 0.95
    videos = [i for i in items if i["type"] == "video"]
    assert videos and all(v["thumbnail"]["url"].startswith(server.origin) and v["url"].endswith(".mp4") for v in videos)
    assert all(i["thumbnail"] is None for i in items if i["type"] == "image")


async def test_add_new_puts_new_items_first_under_newest() -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        new_ids = server.catalogue.add_new(5)
        page = await get_json(session, server.api_base + "/images", {"sort": "Newest", "limit": "5", **ALL})
    assert [i["id"] for i in page["items"]] == new_ids
    assert new_ids == sorted(new_ids, reverse=True)
    assert set(new_ids) <= set(server.catalogue.expected(ALL))


def test_catalogue_is_deterministic_from_the_seed() -> None:
    a, b, c = (Catalogue(SimConfig(images=200, seed=s)) for s in (7, 7, 8))
    assert a.items == b.items and a.items != c.items
    assert a.expected(ALL) == b.expected(ALL)
    assert a.body(a.items[0]["id"], 300, False) == b.body(b.items[0]["id"], 300, False)


# --- CDN --------------------------------------------------------------------------------------


def rewrite(url: str, options: str) -> str:
    parts = url.split("/")
    parts[-2] = options
    return "/".join(parts)


async def fetch(session: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, bytes, aiohttp.ClientResponse]:
    async with session.get(url, **kw) as response:
        return response.status, await response.read(), response


async def test_width_rewriting_serves_width_dependent_bodies_and_never_upscales() -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        item = next(i for i in server.catalogue.items if i["type"] == "image")
        url = server.origin + item["url"]
        _, small, response = await fetch(session, rewrite(url, "width=100"))
        _, larger, _ = await fetch(session, rewrite(url, "anim=false,width=200"))
        _, full, _ = await fetch(session, rewrite(url, f"width={item['width']}"))
        _, huge, _ = await fetch(session, rewrite(url, "width=100000"))
        _, original, _ = await fetch(session, rewrite(url, "original=true,quality=90"))
        catalogue = server.catalogue
        assert small == catalogue.body(item["id"], 100, False)[0]
        assert larger == catalogue.body(item["id"], 200, False)[0]
        assert original == catalogue.body(item["id"], None, True)[0]
        assert response.headers["Content-Type"] == catalogue.body(item["id"], 100, False)[1]
        assert int(response.headers["Content-Length"]) == len(small)
    assert len({small, larger, full, original}) == 4
    assert huge == full, "never upscaled: a width over the original serves the original width"


async def test_every_listed_url_serves_the_expected_body() -> None:
    async with sim(images=150) as server, aiohttp.ClientSession() as session:
        items = [i for p in await walk(session, server.api_base, {**ALL, "limit": "200"}) for i in p["items"]]
        own = server.catalogue.expected(ALL)
        at_450 = server.catalogue.expected(ALL, width=450)
        originals = server.catalogue.expected(ALL, original=True)
        for item in items:
            _, body, response = await fetch(session, item["url"])
            assert hashlib.sha256(body).hexdigest() == own[item["id"]]
            ctype = response.headers["Content-Type"]
            magic = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG", "image/webp": b"RIFF", "video/mp4": b"\x00\x00\x00"}
            assert body.startswith(magic[ctype]), ctype
            assert (ctype == "video/mp4") == (item["type"] == "video")
            _, body, _ = await fetch(session, rewrite(item["url"], "width=450"))
            assert hashlib.sha256(body).hexdigest() == at_450[item["id"]]
            _, body, _ = await fetch(session, rewrite(item["url"], "original=true"))
            assert hashlib.sha256(body).hexdigest() == originals[item["id"]]
    assert len({len(b) for b in (server.catalogue.body(i["id"], None, True)[0] for i in items)}) > 10


async def test_video_thumbnail_is_a_jpeg_still() -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        video = next(i for i in server.catalogue.items if i["type"] == "video")
        status, body, response = await fetch(session, server.origin + video["thumbnail"]["url"])
    assert status == 200 and response.headers["Content-Type"] == "image/jpeg" and body[:3] == b"\xff\xd8\xff"


async def test_unknown_uuid_and_bad_width_are_rejected() -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        item = server.catalogue.items[0]
        unknown = server.origin + "/xG1nkqKTMzGDvpLrqFT7WA/00000000-0000-4000-8000-000000000000/width=450/1.jpeg"
        assert (await fetch(session, unknown))[0] == 404
        assert (await fetch(session, rewrite(server.origin + item["url"], "width=zero")))[0] == 400


async def test_gone_items_answer_404_or_410_and_are_not_expected() -> None:
    async with sim(gone=0.3) as server, aiohttp.ClientSession() as session:
        gone = server.catalogue.expected_gone(ALL)
        expected = server.catalogue.expected(ALL)
        by_id = {i["id"]: i for i in server.catalogue.items}
        statuses = {(await fetch(session, server.origin + by_id[i]["url"]))[0] for i in gone}
    assert gone and not gone & set(expected)
    assert len(gone) + len(expected) == len(server.catalogue.items)
    assert statuses == {404, 410}


async def test_range_request_resumes_a_body() -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        item = server.catalogue.items[0]
        whole, _ = server.catalogue.body(item["id"], None, True)
        url = rewrite(server.origin + item["url"], "original=true")
        status, tail, response = await fetch(session, url, headers={"Range": "bytes=100-"})
    assert status == 206 and tail == whole[100:]
    assert response.headers["Content-Range"] == f"bytes 100-{len(whole) - 1}/{len(whole)}"


def first_url(server: SimServer) -> str:
    return server.origin + server.catalogue.items[0]["url"]


async def test_cdn_429_carries_retry_after_seconds() -> None:
    async with sim(faults=FaultConfig(cdn_429=1.0, retry_after=0.2)) as server, aiohttp.ClientSession() as session:
        status, _, response = await fetch(session, first_url(server))
    assert status == 429 and response.headers["Retry-After"] == "0.2"
    assert server.log.entries("cdn")[0].fault == "429"


async def test_retry_after_can_be_an_http_date() -> None:
    faults = FaultConfig(api_429=1.0, retry_after=30, retry_after_http_date=True)
    async with sim(faults=faults) as server, aiohttp.ClientSession() as session:
        async with session.get(server.api_base + "/images") as response:
            status, value = response.status, response.headers["Retry-After"]
    wait = parsedate_to_datetime(value).timestamp() - time.time()
    assert status == 429 and 29 <= wait <= 32


async def test_cdn_500_and_html_faults() -> None:
    async with sim(faults=FaultConfig(cdn_500=1.0)) as server, aiohttp.ClientSession() as session:
        assert (await fetch(session, first_url(server)))[0] == 500
    async with sim(faults=FaultConfig(cdn_html=1.0)) as server, aiohttp.ClientSession() as session:
        status, body, response = await fetch(session, first_url(server))
    assert status == 200 and response.headers["Content-Type"].startswith("text/html")
    assert body.lstrip().lower().startswith(b"<!doctype html")


async def test_cdn_truncate_sends_fewer_bytes_than_content_length() -> None:
    async with sim(faults=FaultConfig(cdn_truncate=1.0)) as server, aiohttp.ClientSession() as session:
        async with session.get(first_url(server)) as response:
            promised = response.content_length
            received = b""
            with pytest.raises(aiohttp.ClientPayloadError):
                async for chunk in response.content.iter_any():
                    received += chunk
    assert promised is not None and 0 < len(received) < promised
    assert server.log.entries("cdn")[0].fault == "truncate"


async def test_cdn_reset_raises_on_the_client() -> None:
    async with sim(faults=FaultConfig(cdn_reset=1.0)) as server, aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            await fetch(session, first_url(server))
    entry = server.log.entries("cdn")[0]
    assert entry.fault == "reset" and entry.status == 0


async def test_cdn_stall_hangs_about_stall_seconds_then_completes() -> None:
    async with sim(faults=FaultConfig(cdn_stall=1.0, stall_seconds=0.6)) as server, aiohttp.ClientSession() as session:
        started = time.monotonic()
        _, body, _ = await fetch(session, first_url(server))
        elapsed = time.monotonic() - started
        item = server.catalogue.items[0]
    assert elapsed >= 0.55
    assert hashlib.sha256(body).hexdigest() == server.catalogue.expected(ALL)[item["id"]]


async def test_stalled_body_times_out_on_the_client_and_shutdown_does_not_wait_for_it() -> None:
    server = sim(faults=FaultConfig(cdn_stall=1.0, stall_seconds=60))
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(asyncio.TimeoutError):
                async with session.get(first_url(server), timeout=aiohttp.ClientTimeout(sock_read=0.3)) as r:
                    await r.read()
            # A second stalled request is still hanging when the server stops.
            pending = asyncio.ensure_future(fetch(session, first_url(server)))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            await server.stop()
            assert time.monotonic() - started < 5
            with pytest.raises(aiohttp.ClientError):
                await asyncio.wait_for(pending, 5)
    finally:
        await server.stop()


# --- API faults -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["429", "503", "500"])
async def test_api_error_faults(kind: str) -> None:
    faults = FaultConfig(**{f"api_{kind}": 1.0}, retry_after=2)
    async with sim(faults=faults) as server, aiohttp.ClientSession() as session:
        async with session.get(server.api_base + "/images") as response:
            status, headers, body = response.status, response.headers, await response.read()
    assert status == int(kind)
    assert ("Retry-After" in headers) == (kind != "500")
    if kind != "429":
        assert headers["Content-Type"].startswith("text/html") and body.startswith(b"<html")
    assert server.log.entries("api")[0].status == int(kind)


async def test_api_malformed_json_has_status_200() -> None:
    async with sim(faults=FaultConfig(api_malformed=1.0)) as server, aiohttp.ClientSession() as session:
        async with session.get(server.api_base + "/images") as response:
            status, body = response.status, await response.read()
    assert status == 200 and body.startswith(b'{"items":[')
    with pytest.raises(ValueError):
        json.loads(body)


async def test_api_reset_raises_on_the_client() -> None:
    async with sim(faults=FaultConfig(api_reset=1.0)) as server, aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            await get_json(session, server.api_base + "/images", {})
    assert server.log.entries("api")[0].status == 0


async def test_fault_rate_follows_its_probability() -> None:
    async with sim(faults=FaultConfig(api_429=0.3, retry_after=0)) as server, aiohttp.ClientSession() as session:
        for _ in range(200):
            async with session.get(server.api_base + "/images", params={"limit": "1"}) as response:
                await response.read()
    assert 30 < server.log.count("api", 429) < 90
    assert server.log.count("api", 200) + server.log.count("api", 429) == 200


async def test_latency_delays_every_response() -> None:
    async with sim(faults=FaultConfig(latency_ms=200)) as server, aiohttp.ClientSession() as session:
        started = time.monotonic()
        await get_json(session, server.api_base + "/images", {"limit": "1"})
        await fetch(session, first_url(server))
    assert time.monotonic() - started >= 0.39


# --- request log ----------------------------------------------------------------------------


async def test_request_log_records_kind_status_auth_and_user_agent() -> None:
    async with sim() as server, aiohttp.ClientSession(headers={"User-Agent": "test-agent/1"}) as session:
        await get_json(session, server.api_base + "/images", {"limit": "1"})
        async with session.get(server.api_base + "/images", params={"limit": "1"}, headers={"Authorization": "Bearer x"}) as r:
            await r.read()
        await get_json(session, server.api_base + "/images", {"limit": "1", "token": "x"})
        await fetch(session, first_url(server))
        await fetch(session, server.origin + "/nowhere")
    log = server.log
    assert [e.auth for e in log.entries("api")] == [False, True, True]
    assert [e.auth for e in log.entries("cdn")] == [False]
    assert log.count("api") == 3 and log.count("cdn") == 1 and log.count("other", 404) == 1
    assert all(e.user_agent == "test-agent/1" for e in log.entries())
    assert log.entries("api")[0].query == {"limit": "1"}
    log.clear()
    assert log.count() == 0


def test_max_per_window_counts_the_busiest_sliding_window() -> None:
    log = RequestLog()
    for t in (0.0, 0.1, 0.2, 0.95, 1.5, 1.6, 3.0):
        log.append(LogEntry(t=t, kind="cdn", path="/", query={}))
    log.append(LogEntry(t=0.5, kind="api", path="/", query={}))
    assert log.max_per_window("cdn", 1.0) == 4  # 0.0, 0.1, 0.2, 0.95
    assert log.max_per_window("cdn", 0.5) == 3
    assert log.max_per_window("api", 1.0) == 1
    assert log.max_per_window(None, 1.0) == 5


async def test_max_per_window_sees_a_real_burst() -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        await asyncio.gather(*(fetch(session, first_url(server)) for _ in range(20)))
        await asyncio.sleep(1.1)
        await fetch(session, first_url(server))
    assert server.log.max_per_window("cdn", 1.0) == 20


# --- thread and CLI -------------------------------------------------------------------------


def test_sim_thread_serves_synchronous_code() -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with SimThread(SimConfig(images=100)) as server:
        with opener.open(server.api_base + "/images?limit=5", timeout=5) as response:
            page = json.loads(response.read())
        with opener.open(page["items"][0]["url"], timeout=5) as response:
            body = response.read()
        expected = server.catalogue.expected()
        assert len(page["items"]) == 5
        assert hashlib.sha256(body).hexdigest() == expected[page["items"][0]["id"]]
        assert server.log.count("cdn", 200) == 1
    with pytest.raises(OSError):
        opener.open(server.api_base + "/images", timeout=2)


def test_cli_prints_the_listening_line_serves_and_exits_0_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "crawler.simulator", "--port", "0", "--images", "50", "--cursor-style", "number"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline().strip() if process.stdout else ""
        assert line.startswith("listening on http://127.0.0.1:") and line.endswith("/api/v1"), line
        api_base = line.removeprefix("listening on ")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(api_base + "/images?limit=10&browsingLevel=31", timeout=5) as response:
            page = json.loads(response.read())
        assert len(page["items"]) == 10 and page["metadata"]["nextCursor"] == 10
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_refuses_a_non_loopback_host() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crawler.simulator", "--host", "0.0.0.0"],
        cwd=REPO, capture_output=True, text=True, timeout=10,
    )
    assert result.returncode == 2 and "loopback" in result.stderr


async def test_period_keeps_only_items_near_the_newest() -> None:
    async with sim(images=2000) as server, aiohttp.ClientSession() as session:
        week = set(ids_of(await walk(session, server.api_base, {"period": "Week", **ALL, "limit": "200"})))
        year = set(ids_of(await walk(session, server.api_base, {"period": "Year", **ALL, "limit": "200"})))
        expected_week = set(server.catalogue.expected({"period": "Week", **ALL}))
        async with session.get(server.api_base + "/images", params={"period": "Fortnight"}) as response:
            assert response.status == 400
    assert week == expected_week and 0 < len(week) < len(year) < 2000


async def test_anim_false_is_ignored_for_images() -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        item = next(i for i in server.catalogue.items if i["type"] == "image")
        url = server.origin + item["url"]
        _, with_anim, _ = await fetch(session, rewrite(url, "original=true,anim=false"))
        _, plain, _ = await fetch(session, rewrite(url, "original=true"))
    assert with_anim == plain == server.catalogue.body(item["id"], None, True)[0]


# --- hostile API modes ----------------------------------------------------------------------


async def get_raw(session: aiohttp.ClientSession, url: str, params: dict[str, str]) -> tuple[int, bytes, aiohttp.ClientResponse]:
    async with session.get(url, params=params, allow_redirects=False) as response:
        return response.status, await response.read(), response


@pytest.mark.parametrize("mode", ["401", "403", "451"])
async def test_refusal_modes_answer_every_request_with_that_status_and_a_json_error(mode: str) -> None:
    async with sim(api_mode=mode) as server, aiohttp.ClientSession() as session:
        for params in ({}, {"limit": "5", "cursor": "anything"}):
            status, body, response = await get_raw(session, server.api_base + "/images", params)
            assert status == int(mode) and response.headers["Content-Type"].startswith("application/json")
            assert isinstance(json.loads(body)["error"], str)
    assert server.log.count("api", int(mode)) == 2


async def test_no_items_mode_answers_metadata_only() -> None:
    async with sim(api_mode="no-items") as server, aiohttp.ClientSession() as session:
        status, body, _ = await get_raw(session, server.api_base + "/images", {"limit": "5"})
    assert status == 200 and json.loads(body) == {"metadata": {}}


async def test_not_json_mode_answers_html_with_status_200() -> None:
    async with sim(api_mode="not-json") as server, aiohttp.ClientSession() as session:
        status, body, response = await get_raw(session, server.api_base + "/images", {})
    assert status == 200 and response.headers["Content-Type"].startswith("text/html") and body.startswith(b"<html>")


async def test_redirect_mode_points_at_localhost_and_is_never_followed_by_the_server_itself() -> None:
    async with sim(api_mode="redirect") as server, aiohttp.ClientSession() as session:
        status, _, response = await get_raw(session, server.api_base + "/images", {"limit": "7", "sort": "Newest"})
    target = urlsplit(response.headers["Location"])
    assert status == 302
    assert (target.scheme, target.hostname, target.port, target.path) == ("http", "localhost", server.port, "/api/v1/images")
    assert dict(parse_qsl(target.query)) == {"limit": "7", "sort": "Newest"}
    assert [e.host for e in server.log.entries()] == [f"127.0.0.1:{server.port}"]


@pytest.mark.parametrize("style", ["offset", "number", "feed"])
async def test_cursor_loop_mode_sends_back_the_cursor_it_was_given_from_the_third_page(style: str) -> None:
    async with sim(api_mode="cursor-loop", cursor_style=style) as server, aiohttp.ClientSession() as session:
        url, params = server.api_base + "/images", {"limit": "10", **ALL}
        first = await get_json(session, url, params)
        second = await get_json(session, url, {**params, "cursor": str(first["metadata"]["nextCursor"])})
        sent = second["metadata"]["nextCursor"]
        third = await get_json(session, url, {**params, "cursor": str(sent)})
        fourth = await get_json(session, url, {**params, "cursor": str(third["metadata"]["nextCursor"])})
    assert first["metadata"]["nextCursor"] != sent, "pages 1 and 2 are normal"
    assert third["metadata"]["nextCursor"] == sent and fourth["metadata"]["nextCursor"] == sent
    assert [i["id"] for i in third["items"]] == [i["id"] for i in fourth["items"]] != []
    assert dict(parse_qsl(urlsplit(third["metadata"]["nextPage"]).query))["cursor"] == str(sent)


async def test_empty_forever_mode_keeps_issuing_fresh_cursors_over_empty_pages() -> None:
    async with sim(api_mode="empty-forever", cursor_style="number") as server, aiohttp.ClientSession() as session:
        url, params = server.api_base + "/images", {"limit": "10", **ALL}
        pages = [await get_json(session, url, params)]
        for _ in range(40):
            pages.append(await get_json(session, url, {**params, "cursor": str(pages[-1]["metadata"]["nextCursor"])}))
    assert all(len(p["items"]) == 10 for p in pages[:2])
    assert all(p["items"] == [] for p in pages[2:])
    cursors = [p["metadata"]["nextCursor"] for p in pages[1:]]
    assert all(isinstance(c, str) for c in cursors[1:]) and len(set(cursors)) == len(cursors)
    assert all("nextPage" in p["metadata"] for p in pages)


def test_api_mode_is_validated_and_has_a_cli_flag() -> None:
    with pytest.raises(ValueError, match="api_mode"):
        SimConfig(api_mode="sideways")
    parser = argparse.ArgumentParser()
    sim_cli.add_arguments(parser)
    cfg = sim_cli.config_from(parser.parse_args(["--api-mode", "cursor-loop", "--hostile-items"]))
    assert cfg.api_mode == "cursor-loop" and cfg.hostile_items
    assert sim_cli.config_from(parser.parse_args([])).api_mode == "normal"
    with pytest.raises(SystemExit):
        parser.parse_args(["--api-mode", "sideways"])


# --- hostile items --------------------------------------------------------------------------


def by_name(server: SimServer, items: list[Any]) -> dict[str, list[Any]]:
    """The hostile items of a page, grouped under their `HOSTILE` names (built the same way)."""
    built = hostile_items(server.origin, server.catalogue.hostile)
    tail = items[len(items) - len(built):]
    assert tail == built
    out: dict[str, list[Any]] = {}
    for name in HOSTILE:
        count = 3 if name == "not-an-object" else 1
        out[name], tail = tail[:count], tail[count:]
    return out


@pytest.mark.parametrize(("style", "sort"), [("offset", "Most Reactions"), ("number", "Newest"), ("feed", "Random")])
async def test_hostile_items_follow_the_normal_items_on_every_first_page_only(style: str, sort: str) -> None:
    async with sim(hostile_items=True, cursor_style=style) as server, aiohttp.ClientSession() as session:
        params = {"limit": "20", "sort": sort, **ALL}
        pages = await walk(session, server.api_base, params)
        other = await get_json(session, server.api_base + "/images", {"limit": "5", "type": "video", **ALL})
        expected = server.catalogue.expected(params)
        groups = by_name(server, pages[0]["items"])
        by_name(server, other["items"])
    normal = [i for p in pages for i in p["items"] if isinstance(i, dict) and isinstance(i.get("id"), int) and i["id"] > 1099]
    assert {i["id"] for i in normal} == set(expected), "hostile items are not part of expected()"
    assert all(isinstance(i, dict) and i.get("id", 0) > 1099 for p in pages[1:] for i in p["items"])
    assert len(pages[0]["items"]) == 20 + sum(len(g) for g in groups.values())
    assert groups["not-an-object"] == ["surprise", None, 7]
    assert "id" not in groups["no-id"][0] and "url" not in groups["no-url"][0]
    assert [groups[n][0]["id"] for n in ("id-string", "id-float", "id-bool")] == ["1002abc", 1003.5, True]
    assert groups["url-not-string"][0]["url"] == 12345
    for name, (ident, _) in HOSTILE.items():
        if ident is not None:
            assert groups[name][0]["id"] == ident and 1000 <= ident <= 1099
            assert server.catalogue.record(ident) is None


def test_hostile_outcomes_are_described_by_name() -> None:
    catalogue = Catalogue(SimConfig(images=50))
    assert catalogue.hostile_failed_ids() == {1005, 1006, 1009, 1011, 1012, 1014, 1015}
    assert set(catalogue.hostile_expected()) == {1007, 1008, 1010, 1013, 1016}
    assert catalogue.hostile_invalid_count() == 9
    assert catalogue.hostile_expected() == Catalogue(SimConfig(images=10)).hostile_expected(), "origin and size independent"


async def hostile_page(server: SimServer, session: aiohttp.ClientSession) -> dict[str, list[Any]]:
    page = await get_json(session, server.api_base + "/images", {"limit": "3"})
    return by_name(server, page["items"])


async def test_mirrorable_hostile_items_serve_the_bodies_hostile_expected_predicts() -> None:
    async with sim(images=50, hostile_items=True) as server, aiohttp.ClientSession() as session:
        items = await hostile_page(server, session)
        expected = server.catalogue.hostile_expected()
        got = {}
        for name in ("traversal", "traversal-dots", "redirect-in", "no-length", "wrong-types"):
            item = items[name][0]
            status, body, response = await fetch(session, item["url"])
            assert status == 200 and response.headers["Content-Type"] == "image/jpeg", name
            got[item["id"]] = hashlib.sha256(body).hexdigest()
            if name == "no-length":
                assert "Content-Length" not in response.headers and response.headers["Transfer-Encoding"] == "chunked"
    assert got == expected
    wrong = items["wrong-types"][0]
    assert (wrong["width"], wrong["height"], wrong["stats"], wrong["nsfwLevel"]) == ("832", None, "lots", 3)
    assert (wrong["createdAt"], wrong["meta"]) == ("yesterday", "not an object")
    paths = [e.path for e in server.log.entries("cdn")]
    assert "/tmp/evil.jpeg" in paths, "aiohttp resolves the `..` segments before sending"
    assert any(p.endswith("/width=450/../../../etc/passwd") for p in paths), "%2F stays one segment"


def test_traversal_dots_is_also_served_at_its_unresolved_path() -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with SimThread(SimConfig(images=20, hostile_items=True)) as server:
        with opener.open(server.api_base + "/images?limit=1", timeout=5) as response:
            page = json.loads(response.read())
        item = next(i for i in page["items"] if isinstance(i, dict) and i.get("id") == 1008)
        with opener.open(item["url"], timeout=5) as response:
            body = response.read()
        assert server.log.entries("cdn")[-1].path.endswith("/width=450/../../../../tmp/evil.jpeg")
    assert hashlib.sha256(body).hexdigest() == server.catalogue.hostile_expected()[1008]


async def test_redirect_items_point_out_to_localhost_and_in_to_the_same_origin() -> None:
    async with sim(images=50, hostile_items=True) as server, aiohttp.ClientSession() as session:
        items = await hostile_page(server, session)
        _, _, out = await get_raw(session, items["redirect-out"][0]["url"], {})
        _, _, inside = await get_raw(session, items["redirect-in"][0]["url"], {})
    assert out.status == 302 and inside.status == 302
    target = urlsplit(out.headers["Location"])
    assert (target.hostname, target.port) == ("localhost", server.port)
    assert inside.headers["Location"].startswith(server.origin + "/xG1nkqKTMzGDvpLrqFT7WA/")
    assert urlsplit(items["localhost-host"][0]["url"]).netloc == f"localhost:{server.port}"
    assert urlsplit(items["foreign-host"][0]["url"]).hostname == "evil.invalid"


async def test_log_records_the_host_a_request_was_sent_to() -> None:
    async with sim(images=50, hostile_items=True) as server, aiohttp.ClientSession() as session:
        items = await hostile_page(server, session)
        # As if the crawler had fetched the localhost URL: same socket, other Host header.
        path = urlsplit(items["localhost-host"][0]["url"]).path
        status, _, _ = await fetch(session, server.origin + path, headers={"Host": f"localhost:{server.port}"})
    assert status == 200
    assert [e.host for e in server.log.entries()] == [f"127.0.0.1:{server.port}", f"localhost:{server.port}"]


@pytest.mark.parametrize("name", ["huge-declared", "huge-chunked"])
async def test_huge_bodies_stop_streaming_when_the_client_gives_up(name: str) -> None:
    async with sim(images=50, hostile_items=True) as server, aiohttp.ClientSession() as session:
        items = await hostile_page(server, session)
        async with session.get(items[name][0]["url"]) as response:
            length = response.headers.get("Content-Length")
            read = 0
            async for chunk in response.content.iter_chunked(64 * 1024):
                read += len(chunk)
                if read >= 256 * 1024:
                    break
        await asyncio.sleep(0.3)
        entry = server.log.entries("cdn")[-1]
        sent_then = entry.bytes_sent
        await asyncio.sleep(0.2)
    assert length == ("50000000" if name == "huge-declared" else None)
    assert entry.status == 200 and read <= sent_then < 4_000_000
    assert entry.bytes_sent == sent_then, "nothing more is sent once the client has gone"


async def test_html_page_and_endless_items_misbehave_as_described() -> None:
    server = sim(images=50, hostile_items=True)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            items = await hostile_page(server, session)
            status, body, response = await fetch(session, items["html-page"][0]["url"])
            assert status == 200 and response.headers["Content-Type"].startswith("text/html") and b"<html" in body
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                async with session.get(items["endless"][0]["url"], timeout=aiohttp.ClientTimeout(sock_read=0.3)) as r:
                    await r.read()
            assert time.monotonic() - started < 3
            # A second endless body is still open when the server stops: stop does not wait for it.
            pending = asyncio.ensure_future(fetch(session, items["endless"][0]["url"]))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            await server.stop()
            assert time.monotonic() - started < 5
            with pytest.raises(aiohttp.ClientError):
                await asyncio.wait_for(pending, 5)
    finally:
        await server.stop()
    endless = [e for e in server.log.entries("cdn") if e.path.endswith("/1015.jpeg")]
    assert [e.status for e in endless] == [200, 200] and all(0 < e.bytes_sent < 100 for e in endless)


async def test_every_cdn_response_records_the_body_bytes_it_sent() -> None:
    async with sim(images=50) as server, aiohttp.ClientSession() as session:
        item = server.catalogue.items[0]
        _, whole, _ = await fetch(session, server.origin + item["url"])
        _, part, _ = await fetch(session, server.origin + item["url"], headers={"Range": "bytes=10-"})
        status, missing, _ = await fetch(session, server.origin + "/xG1nkqKTMzGDvpLrqFT7WA/nope/width=1/1.jpeg")
    assert status == 404
    assert [e.bytes_sent for e in server.log.entries("cdn")] == [len(whole), len(part), len(missing)]


async def test_truncated_cdn_body_records_the_half_it_sent() -> None:
    async with sim(faults=FaultConfig(cdn_truncate=1.0)) as server, aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientPayloadError):
            await fetch(session, first_url(server))
    item = server.catalogue.items[0]
    record = server.catalogue.record(item["id"])
    assert record is not None
    whole, _ = server.catalogue.file(record, parse_options(item["url"].split("/")[-2]))
    assert server.log.entries("cdn")[0].bytes_sent == len(whole) // 2


# --- model endpoints ------------------------------------------------------------------------


async def walk_models(session: aiohttp.ClientSession, api_base: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every model `/models` lists for `params`, following nextCursor to the end."""
    models: list[dict[str, Any]] = []
    query = dict(params)
    for _ in range(1000):
        page = await get_json(session, api_base + "/models", query)
        models += page["items"]
        cursor = page["metadata"].get("nextCursor")
        if cursor is None:
            assert "nextPage" not in page["metadata"]
            return models
        assert dict(parse_qsl(urlsplit(page["metadata"]["nextPage"]).query)) == {**params, "cursor": cursor}
        query = {**params, "cursor": cursor}
    raise AssertionError("the model list never ended")


def image_key(image: dict[str, Any]) -> int | str:
    """What a mirror keys a model image by: its id, else the id in the file name, else the uuid."""
    if "id" in image:
        return image["id"]
    segments = urlsplit(image["url"]).path.split("/")
    stem = segments[-1].split(".")[0]
    return int(stem) if stem.isdigit() else segments[2]


def model_images(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for m in models for v in m["modelVersions"] for i in v["images"]]


async def test_models_list_pages_to_the_end_and_matches_expected_models() -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        for params in ({"limit": "5"}, {"limit": "3", "nsfw": "true"}, {"limit": "4", "sort": "Newest"}):
            models = await walk_models(session, server.api_base, params)
            wanted = {k: v for k, v in params.items() if k != "limit"}
            expected = server.catalogue.expected_models("models", params=wanted)
            listed = [m.id for m in server.catalogue.select_models(parse_model_query(wanted).filters)]
            assert [m["id"] for m in models] == listed, params
            images = model_images(models)
            assert all(isinstance(i["id"], int) for i in images), "the list carries image ids"
            assert {i["id"] for i in images} == set(expected) and expected, params
            assert all(len(v["images"]) <= 20 for m in models for v in m["modelVersions"])


async def test_models_list_is_pg_only_by_default_and_nsfw_true_shows_every_level() -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        pg = await walk_models(session, server.api_base, {"nsfw": "false"})
        default = await walk_models(session, server.api_base, {})
        every = await walk_models(session, server.api_base, {"nsfw": "true"})
    assert pg == default
    assert {i["nsfwLevel"] for i in model_images(default)} == {1}
    assert all(any(v["images"] for v in m["modelVersions"]) for m in default), "models with no PG image are hidden"
    levels = {i["nsfwLevel"] for i in model_images(every)}
    assert levels <= {1, 2, 4, 8, 16} and len(levels) > 2
    assert len(every) >= len(default) and len(model_images(every)) > len(model_images(default))


@pytest.mark.parametrize("limit", ["0", "101", "abc", "-1"])
async def test_models_bad_limit_is_http_400(limit: str) -> None:
    async with sim(images=50) as server, aiohttp.ClientSession() as session:
        status, body, _ = await get_raw(session, server.api_base + "/models", {"limit": limit})
    assert status == 400 and "error" in json.loads(body)


async def test_models_default_limit_is_100_and_100_is_allowed() -> None:
    async with sim(images=2600) as server, aiohttp.ClientSession() as session:
        assert len(server.catalogue.models) > 100
        default = await get_json(session, server.api_base + "/models", {"nsfw": "true"})
        most = await get_json(session, server.api_base + "/models", {"nsfw": "true", "limit": "100"})
        one = await get_json(session, server.api_base + "/models", {"nsfw": "true", "limit": "1"})
    assert len(default["items"]) == len(most["items"]) == 100 and default["metadata"]["nextCursor"]
    assert len(one["items"]) == 1


async def test_models_filters_and_sorts() -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        catalogue = server.catalogue
        everything = await walk_models(session, server.api_base, {"nsfw": "true"})
        target = catalogue.models[0]
        word = target.name.split()[1].lower()
        cases: dict[str, tuple[dict[str, str], Any]] = {
            "query": ({"query": word.upper()}, lambda m: word in m["name"].lower()),
            "tag": ({"tag": target.tags[0]}, lambda m: target.tags[0] in m["tags"]),
            "username": ({"username": target.username.upper()}, lambda m: m["creator"]["username"] == target.username),
            "types": ({"types": target.type}, lambda m: m["type"] == target.type),
        }
        for name, (params, keep) in cases.items():
            got = await walk_models(session, server.api_base, {**params, "nsfw": "true"})
            assert [m["id"] for m in got] == [m["id"] for m in everything if keep(m)] != [], name
        both = await walk_models(session, server.api_base, {"types": "LORA,Checkpoint", "nsfw": "true"})
        async with session.get(server.api_base + "/models", params=[("types", "LORA"), ("types", "Checkpoint"),
                                                                     ("nsfw", "true")]) as response:
            repeated = (await response.json())["items"]
        assert [m["id"] for m in both] == [m["id"] for m in repeated]
        assert {m["type"] for m in both} <= {"LORA", "Checkpoint"} and both
        newest = await walk_models(session, server.api_base, {"sort": "Newest", "nsfw": "true"})
        downloads = await walk_models(session, server.api_base, {"sort": "Most Downloaded", "nsfw": "true"})
        year = await walk_models(session, server.api_base, {"period": "Year", "nsfw": "true"})
        for bad in ({"sort": "Worst"}, {"types": "Pictures"}, {"nsfw": "maybe"}, {"period": "Fortnight"}):
            assert (await get_raw(session, server.api_base + "/models", bad))[0] == 400, bad
    ratings = [m["stats"]["rating"] for m in everything]
    assert ratings == sorted(ratings, reverse=True), "Highest Rated is the default"
    counts = [m["stats"]["downloadCount"] for m in downloads]
    assert counts == sorted(counts, reverse=True)
    created = [max(v["createdAt"] for v in m["modelVersions"]) for m in newest]
    assert created == sorted(created, reverse=True)
    assert 0 < len(year) < len(everything)


async def test_model_detail_lists_every_version_with_images_without_ids() -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        uuid_named = 0
        for model in server.catalogue.models:
            detail = await get_json(session, f"{server.api_base}/models/{model.id}", {})
            assert detail["id"] == model.id and [v["id"] for v in detail["modelVersions"]] == [v.id for v in model.versions]
            assert set(detail) >= {"id", "name", "description", "type", "nsfw", "tags", "creator", "stats", "modelVersions"}
            assert set(detail["creator"]) == {"username", "image"}
            images = model_images([detail])
            assert not any("id" in i for i in images) and all(isinstance(i["nsfwLevel"], int) for i in images)
            assert all(len(v["images"]) == min(20, len(model.versions[n].images)) for n, v in enumerate(detail["modelVersions"]))
            assert {image_key(i) for i in images} == set(server.catalogue.expected_models("model", model.id))
            uuid_named += sum(isinstance(image_key(i), str) for i in images)
    assert uuid_named > 0, "some model images carry only their uuid"


async def test_model_version_has_up_to_10_images_with_meta_where_the_item_has_it() -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        catalogue = server.catalogue
        versions = [v for m in catalogue.models for v in m.versions if v.images]
        assert any(len(v.images) > 10 for v in versions)
        for version in versions:
            body = await get_json(session, f"{server.api_base}/model-versions/{version.id}", {})
            assert (body["id"], body["modelId"], body["baseModel"]) == (version.id, version.model_id, version.base_model)
            assert len(body["images"]) == min(10, len(version.images))
            for image in body["images"]:
                assert "id" not in image
                uuid = urlsplit(image["url"]).path.split("/")[2]
                item = catalogue.record(catalogue.uuid_to_id(uuid)).item  # type: ignore[union-attr]
                assert image.get("meta") == item["meta"] and ("meta" in image) == (item["meta"] is not None)
                assert image["nsfwLevel"] == item["browsingLevel"]
            assert {image_key(i) for i in body["images"]} == set(catalogue.expected_models("model-version", version.id))


async def test_unknown_model_and_version_ids_are_404_and_malformed_ones_400() -> None:
    async with sim(images=50) as server, aiohttp.ClientSession() as session:
        for path, status in (("/models/1", 404), ("/model-versions/1", 404), ("/models/abc", 400),
                             ("/model-versions/12x", 400)):
            got, body, _ = await get_raw(session, server.api_base + path, {})
            assert got == status and "error" in json.loads(body), path
    with pytest.raises(KeyError):
        server.catalogue.expected_models("model", 1)
    with pytest.raises(KeyError):
        server.catalogue.uuid_to_id("00000000-0000-4000-8000-000000000000")


async def test_model_versions_show_the_catalogue_images_that_list_them() -> None:
    async with sim() as server:
        catalogue = server.catalogue
        for model in catalogue.models:
            for version in model.versions:
                ids = [i.record.item["id"] for i in version.images]
                assert ids == sorted(ids), "oldest first"
                assert set(ids) == set(catalogue.expected({"modelVersionId": str(version.id), **ALL})) | {
                    i.record.item["id"] for i in version.images if i.record.gone}
        shared: dict[int, set[int]] = {}
        for model in catalogue.models:
            for version in model.versions:
                for image in version.images:
                    shared.setdefault(image.record.item["id"], set()).add(model.id)
    assert any(len(owners) > 1 for owners in shared.values()), "some images belong to two models"


async def test_every_model_image_url_is_served_with_the_body_expected_models_predicts() -> None:
    async with sim(images=150) as server, aiohttp.ClientSession() as session:
        catalogue = server.catalogue
        answers: list[tuple[str, int | None, dict[str, str] | None, list[dict[str, Any]]]] = [
            ("models", None, {"nsfw": "true"}, model_images(await walk_models(session, server.api_base, {"nsfw": "true"})))]
        for model in catalogue.models:
            detail = await get_json(session, f"{server.api_base}/models/{model.id}", {})
            answers.append(("model", model.id, None, model_images([detail])))
            for version in model.versions:
                body = await get_json(session, f"{server.api_base}/model-versions/{version.id}", {})
                answers.append(("model-version", version.id, None, body["images"]))
        fetched = 0
        for endpoint, ident, params, images in answers:
            own = catalogue.expected_models(endpoint, ident, params)
            at_450 = catalogue.expected_models(endpoint, ident, params, width=450)
            assert {image_key(i) for i in images} == set(own), (endpoint, ident)
            for image in images:
                _, body, _ = await fetch(session, image["url"])
                assert hashlib.sha256(body).hexdigest() == own[image_key(image)]
                _, body, _ = await fetch(session, rewrite(image["url"], "width=450"))
                assert hashlib.sha256(body).hexdigest() == at_450[image_key(image)]
                fetched += 1
    assert fetched > 50
    named = [image_key(i) for _, _, _, images in answers[1:] for i in images]
    share = sum(isinstance(k, str) for k in named) / len(named)
    assert 0.08 < share < 0.35, "about 1 in 5 model images is named by its uuid"


async def test_uuid_named_model_images_map_back_to_their_catalogue_id() -> None:
    async with sim() as server:
        catalogue = server.catalogue
        images = [i for m in catalogue.models for v in m.versions for i in v.images if not i.by_id]
        assert images
        for image in images:
            uuid = image.path.split("/")[2]
            assert image.path.endswith(f"/{uuid}.jpeg") or image.path.endswith(f"/{uuid}.mp4")
            assert catalogue.uuid_to_id(uuid) == image.record.item["id"] and image.key == uuid


async def test_gone_model_images_are_listed_but_not_expected() -> None:
    async with sim(gone=0.3) as server, aiohttp.ClientSession() as session:
        model = max(server.catalogue.models, key=lambda m: sum(len(v.images) for v in m.versions))
        detail = await get_json(session, f"{server.api_base}/models/{model.id}", {})
        gone = server.catalogue.expected_models_gone("model", model.id)
        expected = server.catalogue.expected_models("model", model.id)
        by_key = {image_key(i): i for i in model_images([detail])}
        statuses = {(await fetch(session, by_key[k]["url"]))[0] for k in gone}
    assert gone and not gone & set(expected) and gone | set(expected) == set(by_key)
    assert statuses <= {404, 410}


async def test_model_endpoints_meet_the_api_faults_too() -> None:
    async with sim(images=50, faults=FaultConfig(api_429=1.0, retry_after=0.5)) as server, aiohttp.ClientSession() as session:
        model = server.catalogue.models[0]
        for path in ("/models", f"/models/{model.id}", f"/model-versions/{model.versions[0].id}"):
            status, _, response = await get_raw(session, server.api_base + path, {})
            assert status == 429 and response.headers["Retry-After"] == "0.5", path
    assert server.log.count("api", 429) == 3


def test_models_are_deterministic_and_stable_when_images_are_added() -> None:
    a, b = Catalogue(SimConfig(images=300, seed=5)), Catalogue(SimConfig(images=300, seed=5))
    assert [(m.id, m.name, [v.id for v in m.versions]) for m in a.models] == [
        (m.id, m.name, [v.id for v in m.versions]) for m in b.models]
    assert a.expected_models("models", params={"nsfw": "true"}) == b.expected_models("models", params={"nsfw": "true"})
    before = {m.id: (m.name, dict(m.stats)) for m in a.models}
    a.add_new(50)
    assert {m.id: (m.name, dict(m.stats)) for m in a.models} == before
    assert len(Catalogue(SimConfig(images=3000)).models) == 120, "one model per 25 images"


# --- 2026 options (each off by default): depth cap, stale cursors, split sites, real shapes --------------


def visible_positions(server: SimServer, params: dict[str, str], first: int) -> list[int]:
    """Ids of the visible records among the first `first` positions of the feed for `params`."""
    feed = server.catalogue.select(parse_query(params).filters)
    return [r.item["id"] for r in feed.records[:first] if not r.hidden]


@pytest.mark.parametrize("style", ["offset", "number", "feed"])
async def test_depth_cap_ends_each_chain_after_n_items_and_newest_plus_oldest_cover_the_rest(style: str) -> None:
    async with sim(images=250, depth_cap=100, cursor_style=style) as server, aiohttp.ClientSession() as session:
        newest = await walk(session, server.api_base, {**ALL, "sort": "Newest", "limit": "30"})
        oldest = await walk(session, server.api_base, {**ALL, "sort": "Oldest", "limit": "30"})
        expected = server.catalogue.expected(ALL)
        capped = visible_positions(server, {**ALL, "sort": "Newest"}, 100)
    assert ids_of(newest) == capped and len(capped) == 100
    assert "nextCursor" not in newest[-1]["metadata"] and "nextPage" not in newest[-1]["metadata"]
    assert len(newest) == 4, "100 items at 30 a page: the fourth page holds 10 and ends the chain"
    assert len(ids_of(oldest)) == 100 and not set(ids_of(oldest)) & set(capped)
    assert set(ids_of(newest)) | set(ids_of(oldest)) < set(expected), "250 items: 50 in the gap between the chains"


async def stale_status(session: aiohttp.ClientSession, url: str, params: dict[str, str]) -> tuple[int, Any]:
    async with session.get(url, params=params) as response:
        return response.status, await response.json()


@pytest.mark.parametrize("style", ["offset", "number", "feed"])
async def test_switch_backend_makes_saved_cursors_stale_and_a_restarted_chain_completes(style: str) -> None:
    params = {**ALL, "sort": "Newest", "limit": "40"}
    async with sim(images=200, stale_cursors=True, cursor_style=style) as server, aiohttp.ClientSession() as session:
        url = server.api_base + "/images"
        first = await get_json(session, url, params)
        saved = str(first["metadata"]["nextCursor"])
        assert (await stale_status(session, url, {**params, "cursor": saved}))[0] == 200, "before a switch it goes on"
        async with session.post(server.origin + "/_sim/switch-backend") as response:
            assert response.status == 200 and (await response.json()) == {"generation": 1}
        status, body = await stale_status(session, url, {**params, "cursor": saved})
        assert (status, body) == (400, {"message": "This cursor cannot be continued with these filters"})
        restarted = await walk(session, server.api_base, params)
        assert set(ids_of(restarted)) == set(server.catalogue.expected(ALL))
        assert server.switch_backend() == 2
        status, _ = await stale_status(session, url, {**params, "cursor": str(restarted[0]["metadata"]["nextCursor"])})
        assert status == 400


async def test_without_stale_cursors_a_backend_switch_is_refused() -> None:
    async with sim() as server, aiohttp.ClientSession() as session:
        with pytest.raises(RuntimeError):
            server.switch_backend()
        async with session.post(server.origin + "/_sim/switch-backend") as response:
            assert response.status == 409


def levels_of(pages: list[dict[str, Any]]) -> set[int]:
    return {item["browsingLevel"] for page in pages for item in page["items"]}


async def test_sites_answer_under_their_prefix_with_next_page_on_the_site_called() -> None:
    async with sim(images=300, sites=True) as server, aiohttp.ClientSession() as session:
        red = await walk(session, server.origin + "/red/api/v1", {**ALL, "limit": "50"}, follow_next_page=True)
        com = await walk(session, server.origin + "/com/api/v1", {**ALL, "limit": "50"})
        green = await walk(session, server.origin + "/green/api/v1", {**ALL, "limit": "50"})
        plain = await walk(session, server.api_base, {**ALL, "limit": "50"})
        everything, sfw = server.catalogue.expected(ALL), server.catalogue.expected({"browsingLevel": "3"})
        kinds = {(e.path.split("/api/")[0], e.kind) for e in server.log.entries() if "/api/" in e.path}
    assert red[0]["metadata"]["nextPage"].startswith(server.origin + "/red/api/v1/images?")
    assert set(ids_of(red)) == set(ids_of(com)) == set(ids_of(plain)) == set(everything)
    assert set(ids_of(green)) == set(sfw) and levels_of(green) == {1, 2}
    assert kinds == {("/red", "api"), ("/com", "api"), ("/green", "api"), ("", "api")}


async def test_host_names_pick_the_site_and_next_page_stays_on_that_host() -> None:
    async with sim(images=200, sites=True) as server, aiohttp.ClientSession() as session:
        for host, sfw in ((f"civitai.green:{server.port}", True), (f"red.localhost:{server.port}", False)):
            async with session.get(server.api_base + "/images", params={**ALL, "limit": "50"},
                                   headers={"Host": host}) as response:
                page = await response.json()
            assert (max(i["browsingLevel"] for i in page["items"]) <= 2) == sfw, host
            assert page["metadata"]["nextPage"].startswith(f"http://{host}/api/v1/images?"), host
            assert all(i["url"].startswith(f"http://{host}/") for i in page["items"])


async def test_anonymous_callers_and_restricted_regions_see_sfw_only() -> None:
    async with sim(images=200, anonymous_sfw=True) as server, aiohttp.ClientSession() as session:
        anonymous = await walk(session, server.api_base, {**ALL, "limit": "200"})
        keyed = await walk(session, server.api_base, {**ALL, "limit": "200", "token": "k"})
        mature = await walk(session, server.api_base, {"browsingLevel": "28", "limit": "200"})
    assert levels_of(anonymous) == {1, 2} and levels_of(keyed) == {1, 2, 4, 8, 16}
    assert ids_of(mature) == [], "asking for R and above only, an anonymous caller gets nothing at all"
    async with sim(images=200, region="restricted") as server, aiohttp.ClientSession() as session:
        restricted = await walk(session, server.api_base, {**ALL, "limit": "200", "token": "k"})
    assert levels_of(restricted) == {1, 2}


async def test_blocked_region_answers_451_and_error_bodies_can_say_message() -> None:
    async with sim(region="blocked", error_body="message") as server, aiohttp.ClientSession() as session:
        status, body = await stale_status(session, server.api_base + "/images", ALL)
        assert status == 451 and set(body) == {"message"}
        status, _, _ = await fetch(session, first_url(server))
        assert status == 200, "the CDN is not region-blocked"
    async with sim(error_body="message") as server, aiohttp.ClientSession() as session:
        status, body = await stale_status(session, server.api_base + "/images", {"limit": "999"})
        assert status == 400 and set(body) == {"message"}
    async with sim() as server, aiohttp.ClientSession() as session:
        status, body = await stale_status(session, server.api_base + "/images", {"limit": "999"})
        assert status == 400 and set(body) == {"error"}


async def test_real_shapes_give_every_recorded_item_shape() -> None:
    async with sim(images=400, real_shapes=True) as server, aiohttp.ClientSession() as session:
        nested = [i for p in await walk(session, server.api_base, {**ALL, "limit": "200", "withMeta": "true"})
                  for i in p["items"]]
        flat = [i for p in await walk(session, server.api_base, {**ALL, "limit": "200", "withMeta": "true",
                                                                    "flatMeta": "true"}) for i in p["items"]]
    usernames = [i["username"] for i in nested]
    assert None in usernames and any(type(u) is int for u in usernames) and any(type(u) is str for u in usernames)
    assert all(set(i["meta"]) == {"id", "meta"} and i["meta"]["id"] == i["id"] for i in nested)
    metas = [i["meta"] for i in flat]
    assert None in metas and {} in metas and all(m is None or "id" not in m for m in metas)
    assert any(m and m.get("workflow", "").endswith("undefined}") for m in metas)
    assert any(set(i["stats"].values()) == {None} for i in flat)
    assert any("type" not in i and "browsingLevel" not in i for i in flat), "older items lack the newer fields"
    assert any(i.get("baseModel", "") is None for i in flat) and any(i.get("modelVersionIds") == [] for i in flat)
    urls = [i["url"] for i in flat]
    assert any("/file/civitai-media-cache/" in u and u.count("/") == 6 for u in urls), "b2 without options"
    assert any("/file/civitai-media-cache/" in u and "/original=true,quality=100/" in u for u in urls)
    assert any("%20" in u and u.endswith(".png") for u in urls)
    assert any("/anim=false,width=450,optimized=true/" in u for u in urls)


async def test_real_shapes_urls_serve_the_expected_bodies_and_some_videos_come_back_as_stills() -> None:
    async with sim(images=600, real_shapes=True) as server, aiohttp.ClientSession() as session:
        items = [i for p in await walk(session, server.api_base, {**ALL, "limit": "200"}) for i in p["items"]]
        expected = server.catalogue.expected(ALL)
        stills = server.catalogue.expected_stills(ALL)
        videos = {r.item["id"] for r in (server.catalogue.record(i["id"]) for i in items) if r and r.item["type"] == "video"}
        for item in items:
            status, body, response = await fetch(session, item["url"])
            assert status == 200, item["url"]
            if item["id"] in stills:
                assert response.headers["Content-Type"] == "image/jpeg", "a video answered as a still frame"
            else:
                assert hashlib.sha256(body).hexdigest() == expected[item["id"]], item["url"]
        originals = server.catalogue.expected(ALL, original=True)
    assert stills and stills < videos
    assert set(expected) | stills == {i["id"] for i in items} and not set(expected) & stills
    assert videos <= set(originals), "asked for the original, no video comes back as a still"


def test_2026_options_have_cli_flags_and_are_validated() -> None:
    parser = argparse.ArgumentParser()
    sim_cli.add_arguments(parser)
    cfg = sim_cli.config_from(parser.parse_args([
        "--depth-cap", "500", "--stale-cursors", "--sites", "--sfw-sites", "green,com", "--anonymous-sfw",
        "--region", "restricted", "--error-body", "message", "--real-shapes",
    ]))
    assert (cfg.depth_cap, cfg.stale_cursors, cfg.sites, cfg.sfw_sites) == (500, True, True, ("green", "com"))
    assert (cfg.anonymous_sfw, cfg.region, cfg.error_body, cfg.real_shapes) == (True, "restricted", "message", True)
    defaults = sim_cli.config_from(parser.parse_args([]))
    assert defaults == SimConfig()
    for bad in ({"depth_cap": -1}, {"sfw_sites": ("blue",)}, {"region": "mars"}, {"error_body": "text"}):
        with pytest.raises(ValueError):
            SimConfig(**bad)  # type: ignore[arg-type]


async def test_with_tags_lists_each_items_tags_and_the_tags_filter_keeps_items_with_any_of_them() -> None:
    async with sim(images=300) as server, aiohttp.ClientSession() as session:
        tagged = [i for p in await walk(session, server.api_base, {**ALL, "limit": "200", "withTags": "true"})
                  for i in p["items"]]
        cats = [i for p in await walk(session, server.api_base, {**ALL, "limit": "50", "tags": "111,2435",
                                                                    "withTags": "true"}) for i in p["items"]]
        plain = await get_json(session, server.api_base + "/images", {**ALL, "limit": "5"})
        expected = server.catalogue.expected({**ALL, "tags": "111,2435"})
        status, _ = await stale_status(session, server.api_base + "/images", {"tags": "cat"})
    assert all(i["tags"] and all(set(t) == {"id", "name"} for t in i["tags"]) for i in tagged)
    assert len({t["id"] for i in tagged for t in i["tags"]}) > 3
    assert cats and {i["id"] for i in cats} == set(expected) and len(cats) < len(tagged)
    assert all({t["id"] for t in i["tags"]} & {111, 2435} for i in cats)
    assert all("tags" not in i for i in plain["items"]), "tags only when asked for"
    assert status == 400


async def test_span_days_and_null_base_models_shape_the_catalogue_without_changing_other_fields() -> None:
    usual = Catalogue(SimConfig(images=300))
    short = Catalogue(SimConfig(images=300, span_days=10, null_base_model=0.3))
    days = (short.items[0]["createdAt"], short.items[-1]["createdAt"])
    spread = (short.newest_ms - short.select(parse_query({**ALL, "sort": "Oldest"}).filters).records[0].created_ms)
    assert 8 * 86_400_000 < spread < 12 * 86_400_000, days  # steps are random around span / count
    assert usual.newest_ms - min(r.created_ms for r in usual.select(parse_query(ALL).filters).records) > 400 * 86_400_000
    nulls = {i["id"] for i in short.items if i["baseModel"] is None}
    assert 0.2 < len(nulls) / len(short.items) < 0.4
    nulled = Catalogue(SimConfig(images=300, null_base_model=0.3))
    assert [{**i, "baseModel": None} for i in usual.items] == [{**i, "baseModel": None} for i in nulled.items]
    async with sim(images=300, null_base_model=0.3) as server, aiohttp.ClientSession() as session:
        pages = await walk(session, server.api_base, {**ALL, "baseModels": "SDXL 1.0,Pony", "limit": "200"})
        nulls = {i["id"] for i in server.catalogue.items if i["baseModel"] is None}
    assert ids_of(pages) and not set(ids_of(pages)) & nulls, "a null baseModel matches no baseModels filter"


async def test_real_shapes_include_audio_items_served_as_audio() -> None:
    async with sim(images=600, real_shapes=True) as server, aiohttp.ClientSession() as session:
        audio = [i for p in await walk(session, server.api_base, {**ALL, "type": "audio", "limit": "200"})
                 for i in p["items"]]
        expected = server.catalogue.expected({**ALL, "type": "audio"})
        for item in audio:
            status, body, response = await fetch(session, item["url"])
            assert (status, response.headers["Content-Type"]) == (200, "audio/mpeg") and body.startswith(b"ID3")
            assert hashlib.sha256(body).hexdigest() == expected[item["id"]]
    assert audio and {i["id"] for i in audio} == set(expected) and all(i["type"] == "audio" for i in audio)
    assert not Catalogue(SimConfig(images=600)).expected({**ALL, "type": "audio"}), "only under real_shapes"
