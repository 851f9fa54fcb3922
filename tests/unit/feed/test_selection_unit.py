"""feed/selection.py on its own: which listed items become jobs, and where paging stops.

`Selector.select` is fed the simulator catalogue's own items; `plan()` pages a real `Feed` against
the simulator's API, so the limits (--max-images, --max-pages, --since) are checked on real pages.
"""

from __future__ import annotations

import random

import pytest
from conftest import crawl_config

from crawler import normalise as N
from crawler.feed.checkpoints import PARTIAL
from crawler.feed.pages import Feed
from crawler.feed.selection import Quota, Selector, plan
from crawler.keys import KeySet
from crawler.net.sessions import open_net
from crawler.simulator import Catalogue, SimConfig
from crawler.stats import CrawlStats
from crawler.stops import Stop

pytestmark = pytest.mark.timeout(60)
ALL = {"browsing_level": 31}


def _selector(tmp_path, done=(), gone=(), **flags):  # type: ignore[no-untyped-def]
    invalid: list[str] = []
    cfg = crawl_config(tmp_path, "http://127.0.0.1:1/api/v1", **flags)
    return Selector(cfg, set(done), set(gone), CrawlStats(), invalid.append), invalid


def test_new_items_become_jobs_in_order_and_the_rest_are_counted_by_why(tmp_path):
    items = Catalogue(SimConfig(images=40, seed=71)).items[:30]
    done, gone = {items[0]["id"], items[1]["id"]}, {items[2]["id"]}
    cut = sorted(i["width"] for i in items)[15]
    selector, invalid = _selector(tmp_path, done, gone, min_width=cut)
    jobs = selector.select([*items, items[5], {"id": 7}], page=1)
    wanted = [i["id"] for i in items[3:] if i["width"] >= cut]
    assert [job.id for job in jobs] == wanted and all(job.page == 1 for job in jobs)
    stats = selector.stats
    assert stats.skipped_done == 3
    assert stats.filtered["too-narrow"] == sum(1 for i in items[3:] if i["width"] < cut)
    # items[5] listed twice: counted as a duplicate if it was taken, else filtered again
    assert stats.duplicates == (1 if items[5]["width"] >= cut else 0)
    assert stats.invalid == 1 and invalid == ["item has no url"]
    assert selector.done == done  # the done-set is the crawl's: selection never adds to it
    assert selector.select(items, page=2) == []  # all queued, done or filtered now


def test_claim_takes_an_earlier_failure_once(tmp_path):
    item = Catalogue(SimConfig(images=5, seed=72)).items[0]
    selector, _ = _selector(tmp_path)
    job = selector.job(item, None)
    assert job is not None and selector.claim(job) and not selector.claim(job)
    assert selector.select([item], page=1) == []


def test_an_image_known_by_uuid_keeps_its_id_and_a_new_source_is_a_reference(tmp_path):
    item = Catalogue(SimConfig(images=5, seed=73)).items[0]
    selector, _ = _selector(tmp_path, done={item["id"]})
    selector.by_uuid = {}
    selector.select([item], page=1, sources=["model:1/version:1"])
    assert [(j.id, j.source) for j in selector.new_refs] == [(item["id"], "model:1/version:1")]
    no_id = {k: v for k, v in item.items() if k != "id"}
    selector.new_refs.clear()
    assert selector.select([no_id], page=2, sources=["model:1/version:2"]) == []  # done, by its uuid
    assert [(j.id, j.source) for j in selector.new_refs] == [(item["id"], "model:1/version:2")]
    selector.select([item], page=3, sources=["model:1/version:2"])
    assert len(selector.new_refs) == 1  # a known (image, source) pair is recorded once


async def _plan(sim, tmp_path, selectors=None, **flags):  # type: ignore[no-untyped-def]
    cfg = crawl_config(tmp_path, sim.api_base, **ALL, **flags)
    selector = Selector(cfg, set(), set(), CrawlStats(), lambda why: None)
    async with open_net(cfg) as net:
        feed = Feed.from_config(cfg, net.api, net.api_gate, net.policy, random.Random(1))
        return [batch async for batch in plan(feed, selectors or selector, None)]


async def test_max_images_cuts_the_page_it_is_reached_on_and_leaves_no_resume_point(sim_factory, tmp_path):
    async with sim_factory(images=200, seed=74) as sim:
        batches = await _plan(sim, tmp_path, limit=10, max_images=25)
    assert [len(b.jobs) for b in batches] == [10, 10, 5]
    assert batches[-1].stop is not None and batches[-1].stop[0] == Stop.MAX_IMAGES
    assert batches[-1].following is PARTIAL and all(b.stop is None for b in batches[:-1])


async def test_the_quota_is_shared_by_every_chain(sim_factory, tmp_path):
    async with sim_factory(images=200, seed=75) as sim:
        cfg = crawl_config(tmp_path, sim.api_base, **ALL, limit=10, max_images=15)
        quota, queued = Quota(), KeySet()
        a, b = (Selector(cfg, set(), set(), CrawlStats(), lambda why: None, chain=n, queued=queued, quota=quota)
                for n in range(2))
        async with open_net(cfg) as net:
            feed = Feed.from_config(cfg, net.api, net.api_gate, net.policy, random.Random(1))
            first = [batch async for batch in plan(feed, a, None)]
            second = [batch async for batch in plan(feed, b, None)]
    assert sum(len(x.jobs) for x in first) == 15 and quota.taken == 15
    assert [len(x.jobs) for x in second] == [0] and second[0].stop[0] == Stop.MAX_IMAGES


async def test_max_pages_stops_after_that_page(sim_factory, tmp_path):
    async with sim_factory(images=200, seed=76) as sim:
        batches = await _plan(sim, tmp_path, limit=10, max_pages=3)
        api = sim.log.count("api")
    assert len(batches) == 3 == api and batches[-1].stop[0] == Stop.MAX_PAGES
    assert batches[-1].following is not None  # the next run may go on from here


async def test_since_on_newest_first_stops_paging_and_resumes_from_the_top(sim_factory, tmp_path):
    async with sim_factory(images=300, seed=77) as sim:
        dates = sorted((N.created_at(i) for i in sim.catalogue.items if i["browsingLevel"] <= 31), reverse=True)
        since = dates[45]
        batches = await _plan(sim, tmp_path, limit=10, sort="Newest", since=since.isoformat())
    assert batches[-1].stop[0] == Stop.SINCE_REACHED and batches[-1].following is None
    assert len(batches) == 5  # the page holding the 46th newest item is the last one asked for
    taken = [N.created_at(job.item) for b in batches for job in b.jobs]
    assert len(taken) == 46 and min(taken) == since


_U = "0b6d3c8e-2d1a-4f7e-9a0e-3b1c2a9f7e11"
_H = f"https://image.civitai.com/xG1nkqKTMzGDvpLrqFT7WA/{_U}"


def test_images_and_videos_take_their_own_size_and_audio_is_fetched_as_listed(tmp_path):
    told: list[str] = []
    cfg = crawl_config(tmp_path, "http://127.0.0.1:1/api/v1", width=450, video_original=True)
    selector = Selector(cfg, set(), set(), CrawlStats(), told.append, log=told.append)
    image, video, audio, old_video = selector.select([
        {"id": 1, "type": "image", "url": f"{_H}/original=true/1.jpeg"},
        {"id": 2, "type": "video", "url": f"{_H}/transcode=true,width=1080/2.mp4"},
        {"id": 3, "type": "audio", "url": f"{_H}/original=true/3.mp3"},
        {"id": 4, "url": f"{_H}/width=720/4.webm"},  # older items have no type: the extension says video
    ], page=1)
    assert (image.url, image.listed, image.video) == (f"{_H}/width=450/1.jpeg", f"{_H}/original=true/1.jpeg", False)
    assert (video.url, video.video) == (f"{_H}/original=true,transcode=true/2.mp4", True)
    assert (audio.url, audio.listed) == (f"{_H}/original=true/3.mp3", None)
    assert old_video.video and old_video.url.endswith("/original=true/4.webm")
    assert told == []


@pytest.mark.parametrize(("flags", "want"), [({"width": 450}, "transcode=true,width=1080"),  # --width: images only
                                             ({"original": True}, "original=true,transcode=true"),
                                             ({"original": True, "video_width": 96}, "width=96,transcode=true")])
def test_width_leaves_videos_as_listed_and_original_takes_them_too(tmp_path, flags, want):
    cfg = crawl_config(tmp_path, "http://127.0.0.1:1/api/v1", **flags)
    selector = Selector(cfg, set(), set(), CrawlStats(), print, log=print)
    [job] = selector.select([{"id": 2, "type": "video", "url": f"{_H}/transcode=true,width=1080/2.mp4"}], page=1)
    assert job.url == f"{_H}/{want}/2.mp4"


def test_an_unrecognised_url_form_is_fetched_as_listed_and_said_once(tmp_path):
    told: list[str] = []
    cfg = crawl_config(tmp_path, "http://127.0.0.1:1/api/v1", original=True)
    selector = Selector(cfg, set(), set(), CrawlStats(), told.append, log=told.append)
    b2 = "https://image-b2.civitai.com/file/civitai-media-cache"
    jobs = selector.select([{"id": n, "url": f"{b2}/{_U}/{_U}.jpeg"} for n in range(5)], page=1)
    assert [(j.url, j.listed) for j in jobs] == [(f"{b2}/{_U}/{_U}.jpeg", None)] * 5
    assert len(told) == 1 and "fetched as listed" in told[0], told
