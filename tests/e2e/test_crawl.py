"""The core crawl end to end: simulator over real sockets, real files, each test one behaviour."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import (
    _NullLog,
    assert_complete,
    crawl_config,
    done_records,
    effective,
    records,
    run_crawl,
    throttle_violations,
)

from crawler.net.limits import HostGate
from crawler.run.crawl import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, Crawl
from crawler.simulator import FaultConfig
from crawler.state import report
from crawler.store.disk import DiskStore

ALL = {"browsingLevel": "31"}


async def test_complete_mirror_equals_the_catalogue(sim_factory, tmp_path):
    async with sim_factory(images=400, seed=3) as sim:
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31)
        expected = sim.catalogue.expected(ALL)
    assert outcome.reason == "feed-ended" and outcome.exit_code == EXIT_OK
    assert len(expected) > 300
    assert_complete(tmp_path, expected)
    assert await report.verify(tmp_path, DiskStore(tmp_path)) == (len(expected), [])


async def test_default_query_is_pg_only_like_the_api(sim_factory, tmp_path):
    async with sim_factory(images=500, seed=4) as sim:
        await run_crawl(tmp_path, sim.api_base, limit=200)  # full-size pages: bodies of several chunks
        expected = sim.catalogue.expected({})
    assert 0 < len(expected) < 500
    assert_complete(tmp_path, expected)


async def test_metadata_is_kept_with_every_done_image(sim_factory, tmp_path):
    async with sim_factory(images=120, seed=5) as sim:
        await run_crawl(tmp_path, sim.api_base, browsing_level=31)
        by_id = {item["id"]: item for item in sim.catalogue.items}
    done = done_records(tmp_path)
    assert done and all(r["item"]["id"] == r["id"] for r in done)
    with_meta = [r for r in done if r["item"].get("meta")]
    assert with_meta and all("prompt" in r["item"]["meta"] for r in with_meta)
    assert all(r["item"]["username"] == by_id[r["id"]]["username"] for r in done)


@pytest.mark.parametrize("size", [{"width": 300}, {"original": True}])
async def test_width_and_original_rewriting(sim_factory, tmp_path, size):
    async with sim_factory(images=150, seed=6) as sim:
        await run_crawl(tmp_path, sim.api_base, browsing_level=31, **size)
        # --width sizes images only (videos are fetched as listed); --original applies to both.
        expected = sim.catalogue.expected(ALL, width=size.get("width"), original=size.get("original", False),
                                          per_kind=True)
        own = sim.catalogue.expected(ALL)
    assert expected != own  # the rewriting is observable
    assert_complete(tmp_path, expected)
    if "width" in size:
        assert all(r["width"] <= 300 for r in done_records(tmp_path) if r["item"].get("type", "image") == "image")


FAULTS = {
    "api_429": FaultConfig(api_429=0.3, retry_after=0.05),
    "api_503": FaultConfig(api_503=0.3, retry_after=0.05),
    "api_500": FaultConfig(api_500=0.3),
    "api_malformed": FaultConfig(api_malformed=0.3),
    "api_reset": FaultConfig(api_reset=0.3),
    "cdn_429": FaultConfig(cdn_429=0.1, retry_after=0.05),
    "cdn_500": FaultConfig(cdn_500=0.2),
    "cdn_reset": FaultConfig(cdn_reset=0.2),
    "cdn_truncate": FaultConfig(cdn_truncate=0.2),
    "cdn_stall": FaultConfig(cdn_stall=0.05, stall_seconds=5.0),
    "cdn_html": FaultConfig(cdn_html=0.2),
    "duplicate": FaultConfig(duplicate=0.5),
    "null_cursor": FaultConfig(null_cursor=0.5),
}


@pytest.mark.parametrize("kind", sorted(FAULTS))
async def test_each_fault_alone_still_ends_complete(sim_factory, tmp_path, kind):
    async with sim_factory(images=200, seed=7, faults=FAULTS[kind]) as sim:
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31, retries=12, timeout=0.5)
        expected = sim.catalogue.expected(ALL)
        faults_seen = sum(1 for e in sim.log.entries() if e.fault)
    if kind == "duplicate":
        assert outcome.stats.duplicates > 0, "no duplicate was served: the test proves nothing"
    elif kind != "null_cursor":  # the null-cursor test below checks that mode on every page
        assert faults_seen > 0, "the simulator injected no fault: the test proves nothing"
    assert outcome.exit_code == EXIT_OK, outcome.message
    assert_complete(tmp_path, expected)


async def test_all_faults_at_once_still_end_complete(sim_factory, tmp_path):
    faults = FaultConfig(api_429=0.05, api_503=0.05, api_500=0.05, api_malformed=0.05, api_reset=0.05,
                         cdn_429=0.02, cdn_500=0.05, cdn_reset=0.05, cdn_truncate=0.05, cdn_stall=0.01,
                         cdn_html=0.03, duplicate=0.3, null_cursor=0.2, retry_after=0.05, stall_seconds=5.0)
    async with sim_factory(images=600, seed=8, hidden=0.2, faults=faults) as sim:
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31, retries=15, timeout=0.5)
        expected = sim.catalogue.expected(ALL)
    assert outcome.exit_code == EXIT_OK, outcome.message
    assert_complete(tmp_path, expected)


async def test_duplicates_across_pages_are_downloaded_once(sim_factory, tmp_path):
    async with sim_factory(images=300, seed=9, faults=FaultConfig(duplicate=1.0)) as sim:
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31)
        expected = sim.catalogue.expected(ALL)
        cdn_requests = sim.log.count(kind="cdn")
    assert outcome.stats.duplicates > 0
    assert cdn_requests == len(expected)
    ids = [r["id"] for r in done_records(tmp_path)]
    assert len(ids) == len(set(ids)) == len(expected)


@pytest.mark.parametrize("style", ["offset", "number", "feed"])
async def test_every_cursor_form_is_followed_to_the_end(sim_factory, tmp_path, style):
    async with sim_factory(images=180, seed=10, cursor_style=style, hidden=0.3) as sim:
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31, limit=20)
        expected = sim.catalogue.expected(ALL)
    assert outcome.reason == "feed-ended"
    assert_complete(tmp_path, expected)


async def test_next_page_is_followed_when_the_cursor_is_null(sim_factory, tmp_path):
    async with sim_factory(images=200, seed=11, faults=FaultConfig(null_cursor=1.0)) as sim:
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31, limit=25)
        expected = sim.catalogue.expected(ALL)
    assert outcome.reason == "feed-ended" and outcome.stats.done == len(expected)
    assert_complete(tmp_path, expected)


async def test_gone_images_are_recorded_gone_and_not_retried(sim_factory, tmp_path):
    async with sim_factory(images=200, seed=12, gone=0.1) as sim:
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31)
        gone = sim.catalogue.expected_gone(ALL)
        first_cdn = sim.log.count(kind="cdn")
        sim.log.clear()
        await run_crawl(tmp_path, sim.api_base, browsing_level=31)
        second_cdn = sim.log.count(kind="cdn")
    assert gone and outcome.stats.gone == len(gone)
    assert {k for k, r in effective(tmp_path).items() if r["status"] == "gone"} == gone
    assert first_cdn > 0 and second_cdn == 0  # nothing done or gone is fetched again
    assert report.summarise(tmp_path).gone == len(gone)


async def test_failed_items_are_recorded_with_reason_and_retried_by_the_next_run(sim_factory, tmp_path):
    async with sim_factory(images=100, seed=13, faults=FaultConfig(cdn_500=0.5)) as sim:
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31, retries=0)
        expected = sim.catalogue.expected(ALL)
        failed = {k for k, r in effective(tmp_path).items() if r["status"] == "failed"}
        assert failed and outcome.exit_code == EXIT_FAILED
        assert all(r["reason"] == "http-500" for r in effective(tmp_path).values() if r["status"] == "failed")
        summary = report.summarise(tmp_path)
        assert summary.failed == len(failed) and summary.failed_by_reason["http-500"] == len(failed)
        port = sim.port
    async with sim_factory(images=100, seed=13, port=port) as sim:  # the server recovered (same URLs)
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31, retries=0)
    assert outcome.exit_code == EXIT_OK and outcome.stats.retried_failures == len(failed)
    assert_complete(tmp_path, expected)


async def test_429_retry_after_pauses_the_whole_pool(sim_factory, tmp_path, monkeypatch):
    pause = 0.5
    # Watched at the gate, in the crawler's own clock: when each pause was asked for, when each request
    # was let through. (Server arrival times alone cannot tell a request let through before the client
    # read the 429 from one let through after, on a loaded machine.)
    pauses: list[tuple[HostGate, float, float]] = []
    starts: list[tuple[HostGate, float]] = []
    real_pause, real_acquire = HostGate.pause, HostGate.acquire

    def watched_pause(gate: HostGate, seconds: float) -> None:
        pauses.append((gate, time.monotonic(), seconds))
        real_pause(gate, seconds)

    async def watched_acquire(gate: HostGate) -> None:
        await real_acquire(gate)
        starts.append((gate, time.monotonic()))

    monkeypatch.setattr(HostGate, "pause", watched_pause)
    monkeypatch.setattr(HostGate, "acquire", watched_acquire)
    async with sim_factory(images=300, seed=14, faults=FaultConfig(cdn_429=0.02, retry_after=pause)) as sim:
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31, concurrency=16, cdn_rps=400)
        cdn = sim.log.entries("cdn")
        expected = sim.catalogue.expected(ALL)
    assert outcome.exit_code == EXIT_OK
    assert_complete(tmp_path, expected)
    throttles = [e for e in cdn if e.status == 429]
    assert len(throttles) >= 4, f"only {len(throttles)} 429(s): too few to show every pause works"
    # Every 429, not only the first: it paused the pool for its Retry-After ...
    assert len(pauses) == len(throttles) and all(seconds == pause for _g, _t, seconds in pauses)
    during = [(t, at) for gate, t, seconds in pauses for g, at in starts if g is gate and t < at < t + seconds]
    assert not during, f"{len(during)} request(s) let through during a pause"
    # ... and, counted at the server, its URL was not asked again before Retry-After (no grace).
    same_url, _pool = throttle_violations(cdn, pause, in_flight=pause)
    assert not same_url, same_url[:5]


async def test_the_cdn_rate_is_never_exceeded_when_it_is_the_bottleneck_retries_included(sim_factory, tmp_path):
    """The API offers ~5000 images/s and 32 workers could start ~1600/s: only the CDN gate holds them to 60.
    Every arrival counts, faulted ones too (retries spend the same budget as first tries)."""
    rate = 60
    faults = FaultConfig(cdn_500=0.05, cdn_reset=0.03, latency_ms=20)
    async with sim_factory(images=360, seed=15, faults=faults) as sim:
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31, cdn_rps=rate, api_rps=50, limit=100,
                                  concurrency=32, retries=12)
        cdn_peak = sim.log.max_per_window("cdn", 1.0)
        cdn_total = sim.log.count(kind="cdn")
        expected = sim.catalogue.expected(ALL)
    assert outcome.exit_code == EXIT_OK, outcome.message
    assert_complete(tmp_path, expected)
    assert cdn_total > len(expected), "no retry was counted: the faults did not bite"
    assert cdn_peak <= rate, f"{cdn_peak} image requests in one second with --cdn-rps {rate}"
    assert cdn_peak >= 0.75 * rate, f"only {cdn_peak}/s: the gate was not the bottleneck, the test proves nothing"


async def test_the_api_rate_is_never_exceeded_when_it_is_the_bottleneck(sim_factory, tmp_path):
    rate = 10
    async with sim_factory(images=45, seed=15, faults=FaultConfig(api_500=0.1)) as sim:
        await run_crawl(tmp_path, sim.api_base, browsing_level=31, api_rps=rate, limit=1, retries=12)
        api_peak = sim.log.max_per_window("api", 1.0)
        expected = sim.catalogue.expected(ALL)
    assert_complete(tmp_path, expected)
    assert api_peak <= rate, f"{api_peak} pages in one second with --api-rps {rate}"
    assert api_peak >= 0.8 * rate, f"only {api_peak}/s: the API gate was not the bottleneck"


async def test_interrupt_then_resume_ends_with_one_clean_mirror(sim_factory, tmp_path):
    async with sim_factory(images=500, seed=16) as sim:
        cfg = crawl_config(tmp_path, sim.api_base, browsing_level=31, cdn_rps=300, concurrency=8)
        crawl = Crawl(cfg, log=_NullLog())

        async def interrupt_after_some():
            for _ in range(500):
                await asyncio.sleep(0.01)
                if crawl.stats.done >= 120:
                    break
            crawl.request_stop()

        outcome, _ = await asyncio.gather(crawl.run(), interrupt_after_some())
        assert outcome.reason == "interrupted" and outcome.exit_code == EXIT_INTERRUPTED
        first_done = outcome.stats.done
        assert 120 <= first_done < 400
        checkpoints = [r for r in records(tmp_path) if r["kind"] == "checkpoint"]
        assert checkpoints, "no checkpoint was written before the interrupt"
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31)
        expected = sim.catalogue.expected(ALL)
        cdn_requests = sim.log.count(kind="cdn")
    assert outcome.reason == "feed-ended"
    assert_complete(tmp_path, expected)
    ids = [r["id"] for r in done_records(tmp_path)]
    assert len(ids) == len(set(ids)), "an image was recorded done twice"
    assert cdn_requests <= len(expected) + cfg.concurrency  # only in-flight items were fetched again


async def test_resume_starts_from_the_last_checkpoint(sim_factory, tmp_path):
    async with sim_factory(images=400, seed=17) as sim:
        await run_crawl(tmp_path, sim.api_base, browsing_level=31, max_images=150, limit=50)
        cursor = [r for r in records(tmp_path) if r["kind"] == "checkpoint"][-1]["cursor"]
        sim.log.clear()
        await run_crawl(tmp_path, sim.api_base, browsing_level=31, limit=50)
        first_api = sim.log.entries("api")[0]
    assert cursor and first_api.query.get("cursor") == cursor


async def test_max_images_is_a_total_of_the_query(sim_factory, tmp_path):
    async with sim_factory(images=300, seed=18) as sim:
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31, max_images=70)
        again = await run_crawl(tmp_path, sim.api_base, browsing_level=31, max_images=70)
    assert outcome.reason == "max-images" and outcome.stats.done == 70 and outcome.exit_code == EXIT_OK
    assert again.reason == "max-images" and again.stats.done == 0 and len(done_records(tmp_path)) == 70


async def test_finished_feed_is_walked_again_for_new_items_without_downloads(sim_factory, tmp_path):
    async with sim_factory(images=150, seed=19) as sim:
        await run_crawl(tmp_path, sim.api_base, browsing_level=31)
        sim.log.clear()
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31)
        cdn = sim.log.count(kind="cdn")
    assert outcome.reason == "feed-ended" and outcome.stats.done == 0 and cdn == 0
    assert outcome.stats.skipped_done == len(sim.catalogue.expected(ALL))


async def test_api_key_goes_only_to_the_api_and_is_never_written(sim_factory, tmp_path):
    key = "k3y-SHOULD-NEVER-LEAK-9f8e7d"
    log = _NullLog()
    async with sim_factory(images=80, seed=20, faults=FaultConfig(cdn_500=0.1, api_500=0.2)) as sim:
        cfg = crawl_config(tmp_path, sim.api_base, env={"CIVITAI_API_KEY": key}, browsing_level=31, retries=0)
        await Crawl(cfg, log=log).run()
        api = sim.log.entries("api")
        cdn = sim.log.entries("cdn")
    assert api and all(e.auth for e in api)
    assert cdn and not any(e.auth for e in cdn)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    assert key not in "".join(log.lines)


async def test_named_part_files_where_the_filesystem_has_no_o_tmpfile(sim_factory, tmp_path, monkeypatch):
    import os
    monkeypatch.delattr(os, "O_TMPFILE")  # as on a filesystem or platform without anonymous files
    async with sim_factory(images=200, seed=21) as sim:
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31)
        expected = sim.catalogue.expected(ALL)
    assert outcome.exit_code == EXIT_OK
    assert_complete(tmp_path, expected)
    assert not list((tmp_path / ".partial").iterdir())


async def test_a_checkpoint_write_on_a_full_disk_stops_the_crawl_with_its_reason(sim_factory, tmp_path, monkeypatch):
    from crawler.run.settle import Settler
    from crawler.store.errors import DiskFull
    real = Settler._checkpoint

    def failing(self, query, name, before, page, following):  # type: ignore[no-untyped-def]
        if page >= 2:
            raise DiskFull(28, "no space left on the disk (test)")
        real(self, query, name, before, page, following)

    monkeypatch.setattr(Settler, "_checkpoint", failing)
    async with sim_factory(images=300, seed=19) as sim:
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31)
    assert outcome.reason == "disk-full" and outcome.exit_code == EXIT_FAILED
