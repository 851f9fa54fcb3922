"""fetch/download.py with today's media (issue 14): a 404 on our size rewrite falls back to the URL as
listed, and a video answered with a still image is failed `video-as-still`, never stored as done.

One Downloader against the simulator's CDN over real sockets (`real_shapes`), writing a real DiskStore.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from conftest import crawl_config

from crawler import urls
from crawler.fetch.download import Downloader
from crawler.net.sessions import open_net
from crawler.simulator import SimConfig, SimServer
from crawler.simulator.shapes import B2_PREFIX, still_video
from crawler.store.disk import DiskStore

pytestmark = pytest.mark.timeout(60)


async def _outcome(sim, root: Path, key: int, url: str, **kw):  # type: ignore[no-untyped-def]
    cfg = crawl_config(root, sim.api_base, retries=1)
    store = DiskStore(root)
    await store.clear_leftovers()
    try:
        async with open_net(cfg, api=False, cdn=True) as net:
            return await Downloader.from_config(cfg, net, store, random.Random(1)).outcome(key, url, **kw)
    finally:
        await store.close()


def _records(sim):  # type: ignore[no-untyped-def]
    return [sim.catalogue.record(item["id"]) for item in sim.catalogue.items]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "images").rglob("*") if p.is_file()) if (root / "images").exists() else []


async def test_a_404_on_our_rewrite_is_retried_as_listed_before_the_image_is_gone(sim_factory, tmp_path):
    async with sim_factory(images=30, seed=141) as sim:
        record = next(r for r in _records(sim) if not r.gone and r.item["type"] == "image")
        listed = f"{sim.origin}{B2_PREFIX}/{record.uuid}/{record.uuid}.jpeg"
        # What the old rewrite made of it: the uuid folder taken for the options segment (issue 14).
        wrong = f"{sim.origin}{B2_PREFIX}/width=450/{record.uuid}.jpeg"
        result = await _outcome(sim, tmp_path, record.item["id"], wrong, listed=listed)
        alone = await _outcome(sim, tmp_path / "alone", record.item["id"], wrong)
        want, _ = sim.catalogue.body(record.item["id"], None, True)
    assert result.status == "done", result
    assert (tmp_path / str(result.path)).read_bytes() == want
    assert alone.status == "gone"  # without the listed URL the 404 would have been final


async def test_a_gone_image_stays_gone_after_the_listed_url_404s_too(sim_factory, tmp_path):
    async with sim_factory(images=20, seed=142, gone=1.0) as sim:
        record = _records(sim)[0]
        listed = sim.origin + record.item["url"]
        result = await _outcome(sim, tmp_path, record.item["id"], urls.rewrite_size(listed, width=9), listed=listed)
        paths = [e.path for e in sim.log.entries("cdn")]
    assert result.status == "gone", result
    assert len(paths) == 2 and paths[-1] == record.item["url"]


async def test_a_video_answered_as_a_still_is_failed_and_nothing_is_stored(tmp_path):
    async with SimServer(SimConfig(images=300, seed=143, real_shapes=True)) as sim:
        record = next(r for r in _records(sim) if not r.gone and still_video(r))
        sized = f"{sim.origin}/xG1nkqKTMzGDvpLrqFT7WA/{record.uuid}/width=320/{record.item['id']}.mp4"
        still = await _outcome(sim, tmp_path, record.item["id"], sized, video=True)
        assert _files(tmp_path) == []
        as_image = await _outcome(sim, tmp_path / "plain", record.item["id"], sized)
        original = sized.replace("/width=320/", "/original=true/")
        whole = await _outcome(sim, tmp_path / "whole", record.item["id"], original, video=True)
        want, kind = sim.catalogue.body(record.item["id"], None, True)
    assert (still.status, still.reason) == ("failed", "video-as-still"), still
    assert as_image.status == "done" and (as_image.content_type or "").startswith("image/")  # what users got
    assert whole.status == "done" and whole.content_type == kind and kind.startswith("video/")
    assert hashlib.sha256(want).hexdigest() == whole.sha256
