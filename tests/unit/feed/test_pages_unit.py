"""feed/pages.py against the simulator's API over real sockets: refused cursors and error bodies (issue 14).

A cursor refused after a feed-backend switch restarts the chain from its first page, told once; a 400
on the first page is the query's fault and stays fatal, its body's `error` or `message` shown as sent.
"""

from __future__ import annotations

import random

import pytest
from conftest import crawl_config

from crawler.feed.pages import Feed, FeedCounters, Position
from crawler.net.retry import Fatal
from crawler.net.sessions import open_net
from crawler.simulator import SimConfig, SimServer

pytestmark = pytest.mark.timeout(60)
ALL = {"browsing_level": 31, "limit": 10}


async def _pages(sim, tmp_path, start=None, told=None, params=None, **flags):  # type: ignore[no-untyped-def]
    cfg = crawl_config(tmp_path, sim.api_base, **{**ALL, **flags})
    counters = FeedCounters()
    async with open_net(cfg) as net:
        feed = Feed.from_config(cfg, net.api, net.api_gate, net.policy, random.Random(1), counters,
                                log=(told if told is not None else []).append)
        if params is not None:
            feed.params = params
        pages = [page async for page in feed.pages(start)]
    return pages, counters


async def test_a_saved_cursor_refused_after_a_backend_switch_restarts_from_the_first_page(tmp_path):
    async with SimServer(SimConfig(images=60, seed=151, stale_cursors=True)) as sim:
        whole, _ = await _pages(sim, tmp_path)
        saved = whole[2].next
        assert saved is not None and saved.cursor is not None
        sim.switch_backend()
        told: list[str] = []
        again, counters = await _pages(sim, tmp_path, start=saved, told=told)
        refused = [e for e in sim.log.entries("api") if e.status == 400]
    ids = [[i["id"] for i in p.items] for p in whole]
    assert [[i["id"] for i in p.items] for p in again] == ids  # the whole feed, from its first page
    assert [p.number for p in again] == list(range(1, len(whole) + 1))
    assert counters.restarts == 1 and len(refused) == 1
    assert len(told) == 1 and "restarting this chain from its first page" in told[0]
    assert "cannot be continued" in told[0]  # the API's own words, shown as sent


@pytest.mark.parametrize("key", ["error", "message"])
async def test_a_400_on_the_first_page_is_fatal_and_shows_the_body_either_way(tmp_path, key):
    async with SimServer(SimConfig(images=20, seed=152, error_body=key)) as sim:
        with pytest.raises(Fatal) as caught:
            await _pages(sim, tmp_path, params=[("limit", "5"), ("tags", "cats")])
        requests = sim.log.count("api")
    assert caught.value.reason == "http-400"
    assert "tags must be comma-separated tag ids" in caught.value.detail
    assert requests == 1  # neither retried nor restarted


async def test_a_refused_cursor_on_a_bad_query_restarts_once_then_the_first_page_400_is_fatal(tmp_path):
    async with SimServer(SimConfig(images=20, seed=153)) as sim:
        told: list[str] = []
        with pytest.raises(Fatal) as caught:
            await _pages(sim, tmp_path, start=Position(cursor="never-issued"), told=told,
                         params=[("limit", "5"), ("tags", "cats")])
        requests = sim.log.count("api")
    assert caught.value.reason == "http-400" and "tags must be" in caught.value.detail
    assert len(told) == 1 and requests == 2  # the saved cursor, then the first page: no loop
