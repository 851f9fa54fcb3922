"""--max-images N is a total: the mirror holds N images of the query, across reruns and kill -9."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli, done_records, flags_list

from crawler.simulator import SimConfig, SimThread
from crawler.state.manifest import MANIFEST_NAME
from crawler.stops import EXIT_OK


def _done_ids(out: Path) -> set[int]:
    ids = [r["id"] for r in done_records(out)]
    assert len(ids) == len(set(ids)), "an image is recorded done twice"
    return set(ids)


def _crawl(out: Path, api_base: str, **flags: object) -> subprocess.CompletedProcess:
    return cli("crawl", "--out", str(out), *flags_list(api_base, browsing_level=31, **flags), timeout=90)


@pytest.mark.timeout(120)
def test_rerun_of_a_finished_max_images_crawl_fetches_nothing(tmp_path):
    with SimThread(SimConfig(images=400, seed=7)) as sim:
        first = _crawl(tmp_path, sim.api_base, max_images=50, limit=20)
        assert first.returncode == EXIT_OK, first.stderr[-2000:]
        assert len(_done_ids(tmp_path)) == 50
        cdn_before = len(sim.log.entries("cdn"))
        again = _crawl(tmp_path, sim.api_base, max_images=50, limit=20)
        assert again.returncode == EXIT_OK, again.stderr[-2000:]
        cdn_after = len(sim.log.entries("cdn"))
    assert len(_done_ids(tmp_path)) == 50
    assert cdn_after == cdn_before, f"the rerun made {cdn_after - cdn_before} CDN request(s)"


@pytest.mark.timeout(120)
def test_rerun_after_kill_9_stops_at_the_same_total(tmp_path):
    manifest = tmp_path / MANIFEST_NAME
    with SimThread(SimConfig(images=600, seed=11)) as sim:
        flags = {"max_images": 200, "limit": 20, "concurrency": 4, "cdn_rps": 300}
        args = [sys.executable, "-m", "crawler", "crawl", "--out", str(tmp_path),
                *flags_list(sim.api_base, browsing_level=31, **flags)]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        # Past the first pages' checkpoints, well short of the total: a resume would start mid-feed.
        while not manifest.exists() or manifest.read_bytes().count(b'"status":"done"') < 90:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the crawl recorded nothing for 60 s"
            time.sleep(0.005)
        proc.kill()
        proc.wait(10)
        killed_at = len(_done_ids(tmp_path))
        assert 90 <= killed_at < 200, killed_at
        rerun = _crawl(tmp_path, sim.api_base, **flags)
        assert rerun.returncode == EXIT_OK, rerun.stderr[-2000:]
        assert len(_done_ids(tmp_path)) == 200
        again = _crawl(tmp_path, sim.api_base, **flags)
        assert again.returncode == EXIT_OK, again.stderr[-2000:]
    assert len(_done_ids(tmp_path)) == 200
