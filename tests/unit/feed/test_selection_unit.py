"""feed/selection.py on its own: which listed items become jobs, and where paging stops.

`Selector.select` is fed the simulator catalogue's own items; `plan()` pages a real `Feed` against
the simulator's API, so the limits (--max-images, --max-pages, --since) are checked on real pages.
"""

from __future__ import annotations

import json
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
    assert batches[-1].stop[1] == (f"items older than --since {since.isoformat()} reached on page 5 "
                                   "(newest first): the rest of the feed is older")


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


_B2 = "https://image-b2.civitai.com/file/civitai-media-cache"


def _uuid(n: int) -> str:
    return f"0b6d3c8e-2d1a-4f7e-9a0e-{n:012x}"


def _img(n, when=None, ident=True):  # type: ignore[no-untyped-def]
    """An /images item as the API lists it; `ident=False`: a model detail image (no `id`, a uuid file name)."""
    name = n if ident else _uuid(n)
    item = {"url": f"https://image.civitai.com/xG1nkqKTMzGDvpLrqFT7WA/{_uuid(n)}/width=450/{name}.jpeg",
            "type": "image", "width": 1024, "height": 1024}
    if ident:
        item["id"] = n
    if when is not None:
        item["createdAt"] = when
    return item


def _bare(tmp_path, **kw):  # type: ignore[no-untyped-def]
    """A Selector built as the crawl's callers build one, without the optional arguments unless given."""
    cfg = crawl_config(tmp_path, "http://127.0.0.1:1/api/v1", **kw.pop("flags", {}))
    return Selector(cfg, kw.pop("done", set()), kw.pop("gone", set()), CrawlStats(), lambda why: None, **kw)


def test_a_selector_built_without_options_tracks_no_newest_and_lists_on_chain_0(tmp_path):
    """Defaults: no high-water mark unless asked (only follow asks), jobs belong to chain 0."""
    selector = _bare(tmp_path)
    jobs = selector.select([_img(1, "2024-05-01T00:00:00Z"), _img(2, "2024-06-01T00:00:00Z")], page=1)
    assert selector.newest is None
    assert [j.chain for j in jobs] == [0, 0]
    other = _bare(tmp_path, chain=3)
    assert [j.chain for j in other.select([_img(3)], page=1)] == [3]
    assert other.job(_img(4), None).chain == 3  # an earlier failure re-made for this chain too


def test_follow_tracks_the_newest_created_at_of_every_item_listed(tmp_path):
    """The high-water mark is the newest createdAt listed, taken or skipped; undated items leave it alone."""
    selector = _bare(tmp_path, track_newest=True, done={3})
    selector.select([_img(1, "2024-05-01T00:00:00Z"), _img(2), _img(3, "2024-07-01T00:00:00Z"),
                     _img(4, "2024-06-01T00:00:00Z"), _img(5, "not a date")], page=1)
    assert selector.newest == N.parse_time("2024-07-01T00:00:00Z")  # item 3 is already mirrored: still counted
    selector.select([_img(6), _img(7, "2024-06-30T00:00:00Z")], page=2)
    assert selector.newest == N.parse_time("2024-07-01T00:00:00Z")
    selector.select([_img(8, "2024-07-02T00:00:00Z")], page=3)
    assert selector.newest == N.parse_time("2024-07-02T00:00:00Z")


def test_the_default_notice_goes_to_stderr_in_the_crawl_log_format(tmp_path, capsys):
    """Without `log`, the unsized notice is a stderr line in --log-format (json here), naming the URL."""
    cfg = crawl_config(tmp_path, "http://127.0.0.1:1/api/v1", original=True, log_format="json")
    selector = Selector(cfg, set(), set(), CrawlStats(), lambda why: None)
    url = f"{_B2}/{_U}/{_U}.jpeg"
    assert len(selector.select([{"id": 1, "url": url}], page=1)) == 1
    [line] = capsys.readouterr().err.splitlines()
    message = json.loads(line)["msg"]
    assert "fetched as listed" in message and message.endswith(f"e.g. {url}")


@pytest.mark.parametrize(("flags", "kind", "ext"), [({"video_width": 96}, "video", "mp4"),
                                                    ({"width": 450}, "image", "jpeg")])
def test_a_width_alone_is_a_size_asked_so_an_unsized_url_is_told(tmp_path, flags, kind, ext):
    """--video-width or --width on its own asks a size: a URL that cannot take it is fetched as listed, said once."""
    told: list[str] = []
    cfg = crawl_config(tmp_path, "http://127.0.0.1:1/api/v1", **flags)
    selector = Selector(cfg, set(), set(), CrawlStats(), told.append, log=told.append)
    url = f"{_B2}/{_U}/{_U}.{ext}"
    jobs = selector.select([{"id": n, "type": kind, "url": url} for n in (1, 2)], page=1)
    assert [(j.url, j.unsized is not None) for j in jobs] == [(url, True)] * 2
    assert len(told) == 1 and told[0].endswith(f"e.g. {url}"), told


def test_every_invalid_item_is_counted_and_the_rest_of_the_page_is_still_read(tmp_path):
    """An invalid item is counted and reported, and never hides the items listed after it."""
    selector, invalid = _selector(tmp_path)
    jobs = selector.select([{"id": 1}, _img(2), "not an object", _img(3)], page=1)
    assert [j.id for j in jobs] == [2, 3]
    assert selector.stats.invalid == 2 and invalid == ["item has no url", "item is not an object"]


def test_every_repeat_listing_of_a_queued_image_is_a_duplicate(tmp_path):
    """Listed three times in a run: one job, two duplicates."""
    selector, _ = _selector(tmp_path)
    assert len(selector.select([_img(1), _img(1)], page=1)) == 1
    assert selector.select([_img(1)], page=2) == []
    assert selector.stats.duplicates == 2


def test_the_queued_set_given_is_the_one_used_and_grown(tmp_path):
    """Chains share the run's queued keys: a key another chain queued is a duplicate here, and this one's are added."""
    queued = KeySet([1])
    selector = _bare(tmp_path, queued=queued)
    assert [j.id for j in selector.select([_img(1), _img(2)], page=1)] == [2]
    assert selector.stats.duplicates == 1 and 2 in queued


def test_a_uuid_map_given_learns_ids_and_keys_id_less_images_by_them(tmp_path):
    """Model images: a listed id is remembered by uuid; an id-less image with a known uuid takes that id,
    one with an unknown uuid is keyed by its uuid."""
    by_uuid: dict[str, int] = {}
    selector = _bare(tmp_path, by_uuid=by_uuid)
    [job] = selector.select([_img(1)], page=1)
    assert by_uuid == {_uuid(1): 1} and job.key == 1
    assert selector.select([_img(1, ident=False)], page=2) == [] and selector.stats.duplicates == 1
    [fresh] = selector.select([_img(2, ident=False)], page=3)
    assert (fresh.key, fresh.id, fresh.uuid) == (_uuid(2), None, _uuid(2))
    assert by_uuid == {_uuid(1): 1}
    other = _bare(tmp_path, by_uuid={_uuid(5): 5})
    [seen] = other.select([_img(5, ident=False)], page=1)
    assert (seen.key, seen.id, seen.uuid) == (5, 5, _uuid(5)) and 5 in other.queued


def test_only_already_mirrored_images_count_toward_max_images_and_each_once(tmp_path):
    """With --max-images a done image listed counts once (held); a gone one never; without the flag none counts."""
    quota = Quota()
    selector = _bare(tmp_path, flags={"max_images": 5}, done={1, 2}, gone={3}, quota=quota)
    assert selector.select([_img(1), _img(2), _img(3), _img(4)], page=1)[0].id == 4
    selector.select([_img(1), _img(3)], page=2)
    assert quota.taken == 2 and set(quota.held) == {1, 2}
    unlimited = Quota()
    selector = _bare(tmp_path, done={1, 2}, gone={3}, quota=unlimited)
    selector.select([_img(1), _img(2), _img(3)], page=1)
    assert unlimited.taken == 0 and len(unlimited.held) == 0 and selector.stats.skipped_done == 3


def test_a_taken_model_image_s_source_is_known_so_only_new_sources_are_references(tmp_path):
    """A taken image's (key, source) is recorded: listed again under it, no reference; under a new one, one.
    Known pairs may be given (from the mirror's records)."""
    refs = {(1, "model:1/version:1")}
    selector = _bare(tmp_path, done={1}, refs=refs)
    selector.select([_img(1), _img(2)], page=1, sources=["model:1/version:1", "model:1/version:1"])
    assert selector.new_refs == [] and (2, "model:1/version:1") in refs
    selector.select([_img(2), _img(2)], page=2, sources=["model:1/version:1", "model:2/version:3"])
    assert [(j.key, j.source) for j in selector.new_refs] == [(2, "model:2/version:3")]
    assert refs == {(1, "model:1/version:1"), (2, "model:1/version:1"), (2, "model:2/version:3")}


def test_claim_refuses_a_job_already_mirrored_or_gone(tmp_path):
    """An earlier failure whose image has since been mirrored or found gone is not fetched again."""
    selector = _bare(tmp_path, done={1}, gone={2})
    assert not selector.claim(selector.job(_img(1), None))
    assert not selector.claim(selector.job(_img(2), None))
    assert selector.claim(selector.job(_img(3), None))


async def test_plan_numbers_pages_resumes_from_start_and_tells_the_max_images_stop(sim_factory, tmp_path):
    """Jobs carry the page they were listed on; a plan from a position starts there; the --max-images message
    says where it was reached (and how many were mirrored before only when some were)."""
    async with sim_factory(images=200, seed=74) as sim:
        cfg = crawl_config(tmp_path, sim.api_base, **ALL, limit=10, max_images=25)
        async with open_net(cfg) as net:
            feed = Feed.from_config(cfg, net.api, net.api_gate, net.policy, random.Random(1))
            fresh = Selector(cfg, set(), set(), CrawlStats(), lambda why: None)
            batches = [batch async for batch in plan(feed, fresh, None)]
            first = [j.id for j in batches[0].jobs]
            resumed = Selector(cfg, set(), set(), CrawlStats(), lambda why: None)
            later = [batch async for batch in plan(feed, resumed, batches[0].following)]
            held = Selector(cfg, set(first[:3]), set(), CrawlStats(), lambda why: None)
            again = [batch async for batch in plan(feed, held, None)]
    assert [b.page.number for b in batches] == [1, 2, 3]
    assert all(job.page == b.page.number for b in batches for job in b.jobs)
    assert batches[-1].stop == (Stop.MAX_IMAGES, "--max-images 25 reached after 3 page(s)")
    assert [j.id for j in later[0].jobs] == [j.id for j in batches[1].jobs]  # page 2 of the first plan
    assert later[-1].stop == (Stop.MAX_IMAGES, "--max-images 25 reached after 3 page(s)")
    assert [len(b.jobs) for b in again] == [7, 10, 5]
    assert again[-1].stop == (Stop.MAX_IMAGES,
                              "--max-images 25 reached after 3 page(s) (3 of them mirrored before this run)")


async def test_model_images_planned_carry_the_model_version_they_were_listed_under(sim_factory, tmp_path):
    """A plan over /models hands each image its `model:M/version:V` source, in the page's order."""
    async with sim_factory(images=300, seed=81) as sim:
        cfg = crawl_config(tmp_path, sim.api_base, source="models", nsfw="true", limit=5, max_pages=2)
        selector = Selector(cfg, set(), set(), CrawlStats(), lambda why: None, by_uuid={})
        async with open_net(cfg) as net:
            feed = Feed.from_config(cfg, net.api, net.api_gate, net.policy, random.Random(1))
            batches = [batch async for batch in plan(feed, selector, None)]
    jobs = [job for b in batches for job in b.jobs]
    assert jobs and all(job.source is not None and job.source.startswith("model:") for job in jobs)
    for b in batches:
        listed = dict(zip((id(item) for item in b.page.items), b.page.sources or [], strict=True))
        assert [job.source for job in b.jobs] == [listed[id(job.item)] for job in b.jobs]
