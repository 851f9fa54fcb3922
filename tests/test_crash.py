"""Crash consistency: kill -9 loops under faults, torn manifests, full disks, and a bounded soak."""

from __future__ import annotations

import collections
import gc
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crawler.state import resume
from crawler.run.crawl import EXIT_FAILED, EXIT_OK
from crawler.state.manifest import MANIFEST_NAME
from crawler.simulator import FaultConfig, SimConfig, SimThread

from conftest import assert_complete, cli, crawl_config, done_records, flags_list, run_crawl

ALL = {"browsingLevel": "31"}
LOW_FAULTS = FaultConfig(api_503=0.03, api_500=0.02, api_malformed=0.02, api_reset=0.02, cdn_500=0.02,
                         cdn_reset=0.01, cdn_truncate=0.01, cdn_429=0.005, cdn_html=0.005, cdn_stall=0.002,
                         duplicate=0.2, null_cursor=0.1, retry_after=0.05, stall_seconds=3.0)


def spawn(out: Path, api_base: str, **flags) -> subprocess.Popen:
    args = [sys.executable, "-m", "crawler", "crawl", "--out", str(out), *flags_list(api_base, browsing_level=31, **flags)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def successful_fetches(log) -> collections.Counter:
    """uuid -> complete 200 answers the CDN gave (faulty answers excluded)."""
    return collections.Counter(e.path.split("/")[2] for e in log.entries("cdn") if e.status == 200 and not e.fault)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_9_loop_under_faults_equals_one_clean_run(tmp_path):
    kills, concurrency = 5, 8
    rng = random.Random(20261126)
    with SimThread(SimConfig(images=3000, seed=31, hidden=0.05, faults=LOW_FAULTS)) as sim:
        flags = dict(concurrency=concurrency, cdn_rps=600, retries=15, timeout=1, limit=100)
        for _ in range(kills):
            proc = spawn(tmp_path, sim.api_base, **flags)
            time.sleep(rng.uniform(0.8, 2.5))  # a random moment: starting up, paging, or downloading
            assert proc.poll() is None, proc.communicate()
            proc.kill()
            proc.wait(10)
        final = cli("crawl", "--out", str(tmp_path), *flags_list(sim.api_base, browsing_level=31, **flags), timeout=180)
        expected = sim.catalogue.expected(ALL)
        fetched = successful_fetches(sim.log)
    assert final.returncode == EXIT_OK, final.stderr[-2000:]
    assert_complete(tmp_path, expected)
    ids = [r["id"] for r in done_records(tmp_path)]
    assert len(ids) == len(set(ids)), "an image is recorded done twice"
    redownloads = sum(n - 1 for n in fetched.values() if n > 1)
    assert redownloads <= kills * concurrency, redownloads
    assert not list((tmp_path / ".partial").iterdir()), "orphaned .part files"
    assert not [p for p in (tmp_path / "images").rglob("*") if p.is_file() and not p.name.split(".")[0].isdigit()]


def test_torn_and_garbage_manifest_lines_are_reported_once_and_kept(tmp_path):
    with SimThread(SimConfig(images=200, seed=32)) as sim:
        first = cli("crawl", "--out", str(tmp_path), *flags_list(sim.api_base, browsing_level=31, max_images=60))
        assert first.returncode == 0, first.stderr
        manifest = tmp_path / MANIFEST_NAME
        lines = manifest.read_bytes().splitlines(keepends=True)
        lines.insert(10, b"this is not json\n")
        damaged = b"".join(lines) + b'{"kind":"image","id":12,"sta'  # torn by kill -9
        manifest.write_bytes(damaged)
        second = cli("crawl", "--out", str(tmp_path), *flags_list(sim.api_base, browsing_level=31))
        expected = sim.catalogue.expected(ALL)
    assert second.returncode == 0, second.stderr
    warnings = [line for line in second.stderr.splitlines() if "unreadable line" in line]
    assert len(warnings) == 1 and "line 11" in warnings[0] and str(len(lines) + 1) in warnings[0]
    after = manifest.read_bytes()
    assert after.startswith(damaged), "the user's manifest was rewritten"
    appended = after[len(damaged):].splitlines()
    assert appended[0] == b"" and all(b'"kind"' in line for line in appended[1:]), "new records merged into the torn line"
    assert_complete(tmp_path, expected)


@pytest.fixture
def small_disk(tmp_path):
    """A real, tiny filesystem (tmpfs) mounted for the test; skipped where mounting is not permitted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_disk_full_stops_cleanly_keeps_everything_recorded_and_resumes(small_disk):
    out = small_disk / "mirror"
    with SimThread(SimConfig(images=400, seed=33, body_bytes=6000)) as sim:
        full = cli("crawl", "--out", str(out), *flags_list(sim.api_base, browsing_level=31))
        assert full.returncode == EXIT_FAILED, full.stderr
        assert "disk full" in full.stderr and "Traceback" not in full.stderr
        expected = sim.catalogue.expected(ALL)
        saved = done_records(out)
        assert 0 < len(saved) < len(expected)
        for record in saved:  # nothing recorded was lost or left half-written
            assert (out / record["path"]).stat().st_size == record["bytes"]
        assert cli("verify", "--out", str(out)).returncode == 0
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        again = cli("crawl", "--out", str(out), *flags_list(sim.api_base, browsing_level=31))
    assert again.returncode == EXIT_OK, again.stderr
    assert_complete(out, expected)
    fast, slow = (resume.load(out / MANIFEST_NAME, "q", snapshots=flag) for flag in (True, False))
    assert (fast.done, fast.gone, set(fast.failed)) == (slow.done, slow.gone, set(slow.failed))
    status = cli("status", "--out", str(out), "--json")
    assert '"reason":"feed-ended"' in status.stdout


def test_manifest_write_on_a_full_disk_raises_disk_full_and_keeps_the_rest(small_disk):
    from crawler.store.errors import DiskFull
    from crawler.state.manifest import ManifestWriter, iter_records
    path = small_disk / MANIFEST_NAME
    writer = ManifestWriter(path)
    big = "x" * 3000
    written = 0
    with pytest.raises(DiskFull):
        for i in range(1000):
            writer.append({"kind": "image", "id": i, "status": "done", "pad": big})
            written = i + 1
    assert 0 < written < 1000
    kept = [r["id"] for r in iter_records(path, lambda n, raw: None)]
    assert kept == list(range(len(kept))) and len(kept) >= written - 1


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_soak_20k_images_under_faults_completes_with_flat_memory_and_no_fd_leak(sim_factory, tmp_path, capsys):
    import asyncio
    from conftest import _NullLog
    from crawler.run.crawl import Crawl
    async with sim_factory(images=20_000, seed=34, body_bytes=1024, faults=LOW_FAULTS) as sim:
        fds_before = len(os.listdir("/proc/self/fd"))
        cfg = crawl_config(tmp_path, sim.api_base, browsing_level=31, concurrency=32, limit=200, retries=15, timeout=1)
        crawl = Crawl(cfg, log=_NullLog())
        samples: list[tuple[int, int]] = []

        async def sample():
            while True:
                await asyncio.sleep(0.5)
                samples.append((crawl.stats.done, _rss_kb()))

        sampler = asyncio.create_task(sample())
        outcome = await crawl.run()
        sampler.cancel()
        expected = sim.catalogue.expected(ALL)
        sim.log.clear()
        gc.collect()
        await asyncio.sleep(0.2)
        fds_after = len(os.listdir("/proc/self/fd"))
    assert outcome.exit_code == EXIT_OK, outcome.message
    assert_complete(tmp_path, expected)
    assert fds_after <= fds_before, f"{fds_after - fds_before} file descriptors leaked"
    early = next(rss for done, rss in samples if done >= 4000)
    peak = max(rss for _, rss in samples)
    with capsys.disabled():
        print(f"\nsoak: {outcome.stats.done} images in {outcome.stats.elapsed():.1f}s, RSS at 4k done {early / 1024:.1f} MB, "
              f"peak {peak / 1024:.1f} MB (test process, simulator included)")
    # The done-set and the simulator's request log grow a little per image; nothing else may.
    assert peak - early < 60 * 1024, (early, peak)


async def test_group_commit_markers_cover_every_done_record(sim_factory, tmp_path):
    from crawler.state.manifest import iter_records_at
    async with sim_factory(images=300, seed=35) as sim:
        await run_crawl(tmp_path, sim.api_base, browsing_level=31, cdn_rps=120)  # ~2.5 s: several commits
    entries = list(iter_records_at(tmp_path / MANIFEST_NAME))
    markers = [(o, r) for o, r in entries if r["kind"] == "durable"]
    last_done = max(o for o, r in entries if r["kind"] == "image")
    assert len(markers) >= 2 and all(r["fsync"] for _, r in markers)
    assert markers[-1][1]["upto"] > last_done  # the final commit covers the last image
    assert sum(r["files"] for _, r in markers) == len(done_records(tmp_path))


async def test_after_a_power_loss_damaged_recent_files_are_fetched_again(sim_factory, tmp_path):
    """Simulate what a power loss can leave: records past the last durable marker whose files are
    empty or missing, and a checkpoint past the marker. The next run must re-check exactly those."""
    import orjson
    async with sim_factory(images=300, seed=36) as sim:
        await run_crawl(tmp_path, sim.api_base, browsing_level=31, max_images=100, cdn_rps=40)
        manifest = tmp_path / MANIFEST_NAME
        lines = manifest.read_bytes().splitlines(keepends=True)
        # Drop the last durable marker(s) of the run: what follows the previous one is "not yet durable".
        markers = [i for i, line in enumerate(lines) if b'"kind":"durable"' in line]
        dones = [i for i, line in enumerate(lines) if b'"status":"done"' in line]
        cut = max(m for m in markers if sum(d > m for d in dones) >= 2)  # a commit with done records after it
        kept = [line for i, line in enumerate(lines) if not (i > cut and b'"kind":"durable"' in line)]
        manifest.write_bytes(b"".join(kept))
        tail_done = [orjson.loads(line) for line in kept[cut + 1:] if b'"status":"done"' in line]
        assert tail_done
        (tmp_path / tail_done[0]["path"]).write_bytes(b"")  # zero-filled/empty after a crash
        if len(tail_done) > 1:
            (tmp_path / tail_done[1]["path"]).unlink()
        from crawler.run.crawl import Crawl
        from conftest import _NullLog
        log = _NullLog()
        outcome = await Crawl(crawl_config(tmp_path, sim.api_base, browsing_level=31), log=log).run()
        expected = sim.catalogue.expected(ALL)
    assert outcome.exit_code == EXIT_OK
    assert any("power loss" in line for line in log.lines)
    assert_complete(tmp_path, expected)
