"""fetch/download.py on its own: one Downloader against the simulator's CDN, writing into a real DiskStore.

Each result is a `Fetched`; an image exists at its final path only whole, and nothing is left behind
when a body is cut short -- with O_TMPFILE and with the named `.partial/*.part` fallback alike.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest
from conftest import crawl_config

from crawler.config.settings import USER_AGENT
from crawler.fetch.download import Downloader
from crawler.net.sessions import CDN_ACCEPT, open_net
from crawler.simulator import FaultConfig
from crawler.store.disk import PARTIAL_DIR, DiskStore

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["tmpfile", "part-file"])
def store_mode(request, monkeypatch):  # type: ignore[no-untyped-def]
    if request.param == "part-file":
        monkeypatch.delattr(os, "O_TMPFILE", raising=False)  # a filesystem without anonymous files
    return request.param


async def _fetch(sim, root: Path, urls: list[tuple[int, str]], **flags):  # type: ignore[no-untyped-def]
    cfg = crawl_config(root, sim.api_base, **flags)
    store = DiskStore(root)
    await store.clear_leftovers()
    try:
        async with open_net(cfg, api=False, cdn=True) as net:
            downloader = Downloader.from_config(cfg, net, store, random.Random(1))
            # Catalogue URLs are paths; the API lists them on the server's origin.
            return [await downloader.outcome(key, url if "://" in url else sim.origin + url) for key, url in urls]
    finally:
        await store.close()


async def test_every_cdn_request_says_who_we_are_and_what_we_accept(sim_factory, tmp_path):
    """The headers are the CDN session's, set once, not each request's."""
    async with sim_factory(images=5, seed=3) as sim:
        items = [i for i in sim.catalogue.items if i["id"] in sim.catalogue.expected()][:2]
        results = await _fetch(sim, tmp_path, [(i["id"], i["url"]) for i in items])
        entries = sim.log.entries("cdn")
    assert [r.status for r in results] == ["done", "done"]
    assert len(entries) == 2
    assert {(e.user_agent, e.accept) for e in entries} == {(USER_AGENT, CDN_ACCEPT)}
    assert CDN_ACCEPT.startswith("image/*")


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_an_image_is_stored_whole_at_its_final_path(sim_factory, tmp_path, store_mode):
    async with sim_factory(images=5, seed=3) as sim:
        expected = sim.catalogue.expected()
        items = [i for i in sim.catalogue.items if i["id"] in expected][:3]
        results = await _fetch(sim, tmp_path, [(i["id"], i["url"]) for i in items])
    for item, result in zip(items, results, strict=True):
        assert result.status == "done", result
        data = (tmp_path / result.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == result.sha256 == expected[item["id"]]
        assert result.bytes == len(data) and result.content_type and result.content_type.startswith(("image/", "video/"))
    assert not list((tmp_path / PARTIAL_DIR).iterdir())
    assert len(_files(tmp_path)) == 3


async def test_a_deleted_image_is_gone_not_failed(sim_factory, tmp_path):
    async with sim_factory(images=20, seed=4, gone=1.0) as sim:
        item = sim.catalogue.items[0]
        [result] = await _fetch(sim, tmp_path, [(item["id"], item["url"])])
        cdn = sim.log.count("cdn")
    assert result.status == "gone" and result.error in ("http-404", "http-410"), result
    assert cdn == 1  # never retried
    assert _files(tmp_path) == []


async def test_a_truncated_body_fails_and_leaves_no_file(sim_factory, tmp_path, store_mode):
    async with sim_factory(images=5, seed=5, faults=FaultConfig(cdn_truncate=1.0)) as sim:
        item = next(i for i in sim.catalogue.items if i["id"] in sim.catalogue.expected())
        [result] = await _fetch(sim, tmp_path, [(item["id"], item["url"])], retries=2)
        tries = sim.log.count("cdn")
    assert result.status == "failed" and result.reason == "truncated", result
    assert "after 3 tries" in (result.error or "")
    assert tries == 3
    assert _files(tmp_path) == []  # neither the final file nor a .part of it


@pytest.mark.parametrize("url", ["http://example.invalid/a.jpeg", "http://[::1/a.jpeg", "http://127.0.0.1\\@x/a.jpeg"])
async def test_a_host_off_the_allow_list_is_refused_without_a_request(sim_factory, tmp_path, url):
    # The last two do not parse (aiohttp's parser refuses them): refused the same way, never raised.
    async with sim_factory(images=5, seed=6) as sim:
        [result] = await _fetch(sim, tmp_path, [(1, url)])
        cdn = sim.log.count("cdn")
    assert result.status == "failed" and result.reason == "refused-host" and cdn == 0
