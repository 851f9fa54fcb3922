"""Follow mode, metrics and compaction: a mirror kept current across passes, observed from outside."""

from __future__ import annotations

import collections
import dataclasses
import gc
import io
import json
import random
import re
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from pathlib import Path

import pytest
from conftest import _NullLog, assert_complete, cli, crawl_config, done_records, flags_list

from crawler.run.follow import Follower, FollowSettings
from crawler.simulator import SimConfig, SimServer, SimThread
from crawler.state import compact as compact_mod
from crawler.state import resume
from crawler.state.manifest import MANIFEST_NAME

ALL = {"browsingLevel": "31"}


def follower(tmp_path, sim, settings, after_pass=None, **flags):
    cfg = dataclasses.replace(crawl_config(tmp_path, sim.api_base, browsing_level=31, **flags), sort="Newest")
    return Follower(cfg, settings, _NullLog(), after_pass=after_pass)


async def test_follow_mirrors_new_items_once_and_stops_at_the_high_water_mark(sim_factory, tmp_path):
    async with sim_factory(images=300, seed=60) as sim:
        api_per_pass = []
        added = []

        def after(n, outcome):
            api_per_pass.append(sim.log.count(kind="api") - sum(api_per_pass))
            if n < 5:
                added.extend(sim.catalogue.add_new(7))

        f = follower(tmp_path, sim, FollowSettings(interval=0.05, passes=6), after, limit=20)
        code = await f.run()
        expected = sim.catalogue.expected(ALL)
        fetched = collections.Counter(e.path for e in sim.log.entries("cdn"))
    assert code == 0 and f.passes == 6
    assert set(added) <= set(expected) and len(added) == 28
    assert_complete(tmp_path, expected)
    assert all(n == 1 for n in fetched.values()), "an image was downloaded twice"
    assert api_per_pass[0] >= 300 // 20 * 0.4  # the first pass walks the whole feed
    # Later passes read only the head: 7 new items plus the margin fit in one or two pages of 20.
    assert all(calls <= 2 for calls in api_per_pass[1:]), api_per_pass


@pytest.mark.timeout(180)
async def test_follow_with_ray_places_its_actors_once_and_every_pass_uses_them(ray_cluster, sim_factory, tmp_path):
    async with sim_factory(images=100, seed=67) as sim:
        added, alive = [], []
        placed = re.compile(r"download worker \d+: pid (\d+)")

        def after(n, outcome):
            pids = [int(m.group(1)) for text in f.log_stream.lines if (m := placed.search(text))]
            alive.append((pids, [_running([pid]) for pid in pids]))
            if n < 3:
                added.extend(sim.catalogue.add_new(5))

        f = follower(tmp_path, sim, FollowSettings(interval=0.05, passes=3), after, executor="ray",
                     ray_address=ray_cluster, download_workers=2)
        code = await f.run()
        expected = sim.catalogue.expected(ALL)
    assert code == 0 and f.passes == 3
    assert_complete(tmp_path, expected)  # later passes fetched the new items
    assert set(added) <= set(expected) and len(added) == 10
    # Placed once, when the follow started: the same two processes served every pass.
    assert all(pids == alive[0][0] and len(pids) == 2 and all(up) for pids, up in alive), alive
    assert _ended(alive[0][0], within=20), "the actors outlived the follow"


def _running(pids: list[int]) -> bool:
    return any(Path(f"/proc/{pid}").exists() for pid in pids)


def _ended(pids: list[int], within: float) -> bool:
    """The processes are gone within `within` s (a killed process takes a moment to go)."""
    deadline = time.monotonic() + within
    while _running(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _running(pids)


async def test_an_outage_of_several_passes_is_waited_out_with_one_line_each_way(sim_factory, tmp_path):
    sim = sim_factory(images=120, seed=61)
    await sim.start()
    port = sim.port
    passes_down = []

    async def after(n, outcome):
        nonlocal sim
        if n == 1:
            await sim.stop()  # the API and CDN disappear: connection refused
        if n in (2, 3, 4):
            passes_down.append(outcome.reason)
        if n == 4:
            sim = SimServer(SimConfig(images=120, seed=61, port=port))
            await sim.start()
            sim.catalogue.add_new(5)

    f = follower(tmp_path, sim, FollowSettings(interval=0.05, passes=6, outage_backoff_max=0.2), after, retries=1)
    code = await f.run()
    expected = sim.catalogue.expected(ALL)
    await sim.stop()
    lines = "".join(f.log_stream.lines)
    assert code == 0 and passes_down == ["api-error"] * 3
    assert lines.count("the API is unavailable") == 1 and lines.count("the API is back after 3 failed pass(es)") == 1
    assert_complete(tmp_path, expected)


async def test_metrics_are_served_over_http_and_count_what_happened(sim_factory, tmp_path):
    from crawler.run import metrics
    async with sim_factory(images=150, seed=62, gone=0.05) as sim:
        scraped = {}

        def after(n, outcome):
            text = urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5).read().decode()
            scraped[n] = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                          if line and not line.startswith("#")}

        f = follower(tmp_path, sim, FollowSettings(interval=0.05, passes=2), after)
        server = metrics.serve(f, 0)
        try:
            await f.run()
        finally:
            server.shutdown()
        expected = sim.catalogue.expected(ALL)
        gone = sim.catalogue.expected_gone(ALL)
        cdn_200 = sim.log.count(kind="cdn", status=200)
    m = scraped[2]
    assert m['civitai_mirror_images_total{status="done"}'] == len(expected)
    assert m['civitai_mirror_images_total{status="gone"}'] == len(gone)
    assert m['civitai_mirror_requests_total{code="200",target="cdn"}'] == cdn_200
    assert m['civitai_mirror_pass'] == 2 and m['civitai_mirror_up'] == 1
    assert m['civitai_mirror_last_success_timestamp_seconds'] > time.time() - 60
    assert m['civitai_mirror_bytes_total'] == sum(r["bytes"] for r in done_records(tmp_path))


async def test_memory_stays_flat_over_fifty_passes(sim_factory, tmp_path):
    async with sim_factory(images=100, seed=63) as sim:
        sizes = {}

        def after(n, outcome):
            sim.log.clear()  # the simulator's own request log is not the crawler's memory
            if n in (10, 55):
                gc.collect()  # count what is still reachable, not cycles awaiting the collector
                sizes[n] = tracemalloc.get_traced_memory()[0]

        tracemalloc.start()
        try:
            f = follower(tmp_path, sim, FollowSettings(interval=0.001, passes=55), after, limit=50, progress="none")
            f.log_stream = f.logger.stream = io.StringIO()  # a log kept in memory would grow by design
            f.log_stream.write = len  # written, then dropped
            await f.run()
        finally:
            tracemalloc.stop()
    growth = sizes[55] - sizes[10]
    assert growth < 256 * 1024, f"{growth} bytes more after 45 more passes"


def test_retries_of_failures_grow_and_gone_images_are_never_retried(tmp_path):
    f = Follower.__new__(Follower)
    f.settings = FollowSettings(interval=100.0)
    now = time.time()
    assert f.retry_due({"attempts": 1, "t": now - 101})
    assert not f.retry_due({"attempts": 2, "t": now - 150})  # 200 s after the 2nd failure
    assert f.retry_due({"attempts": 2, "t": now - 201})
    assert not f.retry_due({"attempts": 30, "t": now - 86000})  # capped at a day, not never
    assert f.retry_due({"attempts": 30, "t": now - 86401})


async def test_gone_images_are_not_fetched_again_by_later_passes(sim_factory, tmp_path):
    async with sim_factory(images=150, seed=64, gone=0.1) as sim:
        f = follower(tmp_path, sim, FollowSettings(interval=0.01, passes=3), None)
        await f.run()
        gone = sim.catalogue.expected_gone(ALL)
        fetched = collections.Counter(e.path.split("/")[2] for e in sim.log.entries("cdn"))
    assert gone and all(n == 1 for n in fetched.values())


def test_status_works_while_follow_runs_and_health_check(tmp_path):
    with SimThread(SimConfig(images=200, seed=65)) as sim:
        args = [sys.executable, "-m", "crawler", "follow", "--out", str(tmp_path), "--interval", "0.2s",
                *flags_list(sim.api_base, browsing_level=31, cdn_rps=100)]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                status = cli("status", "--out", str(tmp_path), "--json")
                if status.returncode == 0 and json.loads(status.stdout)["last_success"]:
                    break
                time.sleep(0.2)
            assert proc.poll() is None, "follow exited"
            healthy = cli("status", "--out", str(tmp_path), "--max-age", "60s")
            assert healthy.returncode == 0, healthy.stderr
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=15)
    assert proc.returncode == 130 and "Traceback" not in err
    time.sleep(1.1)
    stale = cli("status", "--out", str(tmp_path), "--max-age", "1s")
    assert stale.returncode == 1 and "unhealthy" in stale.stderr


def _effective(path):
    state = resume.load(path, "q")
    return state.done, state.gone, set(state.failed)


def test_compaction_survives_kill_9_at_any_moment_and_keeps_the_state(tmp_path):
    import orjson
    root = tmp_path / "m"
    root.mkdir()
    rng = random.Random(7)
    with open(root / MANIFEST_NAME, "wb") as f:  # a long-lived mirror: many retries per image
        for n in range(120_000):
            key = rng.randrange(20_000)
            status = rng.choice(["failed", "failed", "done", "gone"])
            f.write(orjson.dumps({"kind": "image", "id": key, "status": status, "item": {"pad": "x" * 300}}) + b"\n")
            if n % 1000 == 0:
                f.write(orjson.dumps({"kind": "checkpoint", "query": "q", "page": n, "cursor": str(n), "end": False}) + b"\n")
    original = _effective(root / MANIFEST_NAME)
    size = (root / MANIFEST_NAME).stat().st_size
    killed_while_writing = 0
    for _attempt in range(4):
        proc = subprocess.Popen([sys.executable, "-m", "crawler", "compact", "--out", str(root)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not (root / compact_mod.WORKING).exists() and proc.poll() is None:  # the new file is being written
            assert time.monotonic() < deadline, "compaction never began writing"
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.3))  # somewhere in the write, its fsync or the rename
        killed_while_writing += proc.poll() is None and (root / compact_mod.WORKING).exists()
        proc.kill()
        proc.wait(10)
        assert _effective(root / MANIFEST_NAME) == original  # old or new file, never a broken one
    assert killed_while_writing, "no kill landed while the new file was being written"
    final = cli("compact", "--out", str(root))
    assert final.returncode == 0, final.stderr
    assert _effective(root / MANIFEST_NAME) == original
    assert (root / MANIFEST_NAME).stat().st_size < size / 3
    assert _effective(root / compact_mod.PREVIOUS)[0] == original[0]  # the previous generation is kept
    assert resume.load(root / MANIFEST_NAME, "q").checkpoint["cursor"] == "119000"
    assert not (root / compact_mod.WORKING).exists()


def test_compaction_refuses_while_a_crawl_holds_the_mirror(tmp_path):
    with SimThread(SimConfig(images=300, seed=66)) as sim:
        proc = subprocess.Popen([sys.executable, "-m", "crawler", "crawl", "--out", str(tmp_path),
                                 *flags_list(sim.api_base, browsing_level=31, cdn_rps=50)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while not (tmp_path / MANIFEST_NAME).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            result = cli("compact", "--out", str(tmp_path))
        finally:
            proc.kill()
            proc.wait(10)
    assert result.returncode == 2 and "in use by another civitai-mirror" in result.stderr
