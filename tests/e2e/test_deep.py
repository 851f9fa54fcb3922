"""Complete at any depth: a capped feed is never called complete; `--deep` mirrors all a query matches or names gaps.

The simulator's `depth_cap` ends a query's stream after N positions with no next cursor, as users report
of the real API near 50,000 items; Newest and Oldest are separate streams, each capped.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from conftest import assert_complete, cli, done_records, flags_list, records

from crawler.normalise import parse_time
from crawler.simulator import SimConfig, SimThread
from crawler.state.manifest import MANIFEST_NAME
from crawler.stops import EXIT_FAILED, EXIT_OK

ALL = {"browsingLevel": "31"}
CAP = 700  # 3000 mixed items: the whole query, and level 1, each hold more than the two capped chains reach


def _crawl(out: Path, api_base: str, *extra: str, **flags) -> subprocess.CompletedProcess:
    values = {"browsing_level": 31, "depth_cap": CAP, **flags}
    return cli("crawl", "--out", str(out), *extra, *flags_list(api_base, **values), timeout=120)


def _status(out: Path) -> dict:
    result = cli("status", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout)


def _fetches(sim: SimThread) -> collections.Counter:
    """uuid -> 200 answers the CDN gave."""
    return collections.Counter(e.path.split("/")[2] for e in sim.log.entries("cdn") if e.status == 200)


def test_a_feed_that_ends_at_the_depth_cap_stops_depth_capped_not_complete(tmp_path):
    with SimThread(SimConfig(images=3000, seed=131, depth_cap=CAP)) as sim:
        result = _crawl(tmp_path, sim.api_base)
    assert result.returncode == EXIT_FAILED, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "depth-capped" in last and f"--depth-cap {CAP}" in last and "--deep" in last, last
    end = [r for r in records(tmp_path) if r["kind"] == "run" and r["event"] == "end"][-1]
    assert (end["reason"], end["exit_code"]) == ("depth-capped", EXIT_FAILED)
    status = _status(tmp_path)
    assert status["last_run"]["reason"] == "depth-capped"
    assert status["depth"]["depth_cap"] == CAP and status["depth"]["capped"][0]["listed"] == CAP
    assert len(done_records(tmp_path)) == CAP


def test_a_feed_short_of_the_cap_still_ends_feed_ended(tmp_path):
    with SimThread(SimConfig(images=300, seed=132, depth_cap=CAP)) as sim:
        result = _crawl(tmp_path, sim.api_base)
    assert result.returncode == EXIT_OK, result.stderr[-2000:]
    assert _status(tmp_path)["last_run"]["reason"] == "feed-ended"


def test_deep_mirrors_every_item_of_a_capped_query_exactly_once(tmp_path):
    with SimThread(SimConfig(images=3000, seed=131, depth_cap=CAP)) as sim:
        result = _crawl(tmp_path, sim.api_base, "--deep")
        expected = sim.catalogue.expected(ALL)
        fetched = _fetches(sim)
        api = sim.log.count("api")
    assert result.returncode == EXIT_OK, result.stderr[-2000:]
    assert "--deep proved the listing complete" in result.stderr.strip().splitlines()[-1]
    assert_complete(tmp_path, expected)
    ids = [r["id"] for r in done_records(tmp_path)]
    assert len(ids) == len(set(ids)) == 3000
    assert max(fetched.values()) == 1 and sum(fetched.values()) == 3000, "an image was fetched twice"
    # The proof's cost: one uncapped chain would take 3000/50 = 60 pages. Here the whole query and level 1
    # are split after paging 2 x 700 items each (56 pages); the 7 parts proven take ~70 pages (they stop
    # as soon as their chains meet: without stopping, ~160).
    status = _status(tmp_path)
    assert status["gaps"] == [] and status["depth"]["deep"] and status["depth"]["splits"] == 2
    assert api == status["depth"]["pages"] and api <= 140, api


def test_dry_run_deep_says_chains_pages_and_gaps_and_writes_nothing(tmp_path):
    with SimThread(SimConfig(images=3000, seed=131, depth_cap=CAP)) as sim:
        result = _crawl(tmp_path / "m", sim.api_base, "--dry-run", "--deep")
        api = sim.log.count("api")
        cdn = sim.log.count("cdn")
    assert result.returncode == EXIT_OK, result.stderr[-2000:]
    assert f"deep:         18 chain(s) paged, {api} API page(s); no gaps: proven complete" in result.stdout
    assert "to fetch:     3000" in result.stdout and cdn == 0
    assert not (tmp_path / "m" / MANIFEST_NAME).exists() and not (tmp_path / "m" / "images").exists()


def test_an_indivisible_capped_feed_ends_gaps_remain_naming_the_gap(tmp_path):
    # One level, one type, one base model, 274 images over 5000 days: every period window starts within
    # what the Newest chain listed, so nothing narrows the gap between the two capped chains.
    cap = 60
    flags = {"browsing_level": 1, "type": "image", "base_model": "Pony", "depth_cap": cap}
    with SimThread(SimConfig(images=3000, seed=133, depth_cap=cap, span_days=5000)) as sim:
        query = {"browsingLevel": "1", "type": "image", "baseModels": "Pony"}
        result = _crawl(tmp_path, sim.api_base, "--deep", **flags)
        expected = sim.catalogue.expected(query)
        created = {i["id"]: parse_time(i["createdAt"]) for i in sim.catalogue.items}
        dry = _crawl(tmp_path / "dry", sim.api_base, "--deep", "--dry-run", **flags)
    assert result.returncode == EXIT_FAILED, result.stderr[-2000:]
    assert "gaps-remain" in result.stderr.strip().splitlines()[-1]
    status = _status(tmp_path)
    assert status["last_run"]["reason"] == "gaps-remain"
    [gap] = status["gaps"]
    assert gap["filters"] == query and gap["except_base_models"] == []
    assert (gap["listed_newest"], gap["listed_oldest"]) == (cap, cap)
    after, before = parse_time(gap["created_after"]), parse_time(gap["created_before"])
    assert after < before
    # Everything outside the gap is mirrored and correct; nothing inside it was seen.
    outside = {k: v for k, v in expected.items() if not after < created[k] < before}
    assert len(outside) == 2 * cap < len(expected)
    assert_complete(tmp_path, outside)
    assert dry.returncode == EXIT_FAILED and "gaps remain in 1 part(s)" in dry.stdout, dry.stdout


def _spawn(out: Path, api_base: str, **flags) -> subprocess.Popen:
    # --no-fsync: group commits (which checkpoints must precede to be trusted) keep up on a busy machine.
    args = [sys.executable, "-m", "crawler", "crawl", "--out", str(out), "--deep", "--no-fsync",
            *flags_list(api_base, browsing_level=31, depth_cap=CAP, **flags)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.timeout(180)
def test_kill_9_during_a_deep_crawl_then_resume_completes_without_refetching(tmp_path):
    flags = {"cdn_rps": 400, "concurrency": 8}
    with SimThread(SimConfig(images=3000, seed=134, depth_cap=CAP)) as sim:
        assert _crawl(tmp_path / "dry", sim.api_base, "--deep", "--dry-run").returncode == EXIT_OK
        whole = sim.log.count("api")  # what the proof costs from the start
        sim.log.clear()
        # Killed twice: while the split parts page (a part's two chains meeting), and later on; an item one
        # chain skipped as another's, still in flight at the kill, must not be lost behind a checkpoint.
        for done in (1700, 2600):
            proc = _spawn(tmp_path, sim.api_base, **flags)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                manifest = tmp_path / MANIFEST_NAME
                if manifest.exists() and manifest.read_bytes().count(b'"status":"done"') >= done:
                    break
                time.sleep(0.05)
            assert proc.poll() is None, proc.communicate()
            proc.kill()
            proc.wait(10)
        before = sim.log.count("api")
        result = _crawl(tmp_path, sim.api_base, "--deep", "--no-fsync", **flags)
        again = sim.log.count("api") - before
        expected = sim.catalogue.expected(ALL)
        fetched = _fetches(sim)
    assert result.returncode == EXIT_OK, result.stderr[-2000:]
    assert_complete(tmp_path, expected)
    ids = [r["id"] for r in done_records(tmp_path)]
    assert len(ids) == len(set(ids)), "an image is recorded done twice"
    assert sum(n - 1 for n in fetched.values()) <= 2 * flags["concurrency"], "fetched again beyond the in-flight ones"
    # The rerun continued the proof where it stood: the whole query's two capped chains (28 pages), proven
    # unmet before the kills, were not paged again (checkpoints trail the listing, so some pages were).
    assert before > 28 and again <= whole - 28, (before, again, whole)


def test_a_rerun_after_a_finished_proof_proves_afresh_and_finds_new_uploads(tmp_path):
    with SimThread(SimConfig(images=2000, seed=135, depth_cap=CAP)) as sim:
        first = _crawl(tmp_path, sim.api_base, "--deep")
        sim.catalogue.add_new(40)
        second = _crawl(tmp_path, sim.api_base, "--deep")
        expected = sim.catalogue.expected(ALL)
    assert first.returncode == second.returncode == EXIT_OK, second.stderr[-2000:]
    assert_complete(tmp_path, expected)
    assert len(expected) == 2040
