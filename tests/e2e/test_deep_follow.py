"""`--deep` with `follow` and `--max-images`, through the real CLI against a capped simulator.

1500 mixed images, cap 400: the whole query is capped (its two chains cannot meet), each level is not.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import assert_complete, cli, done_records, flags_list, records

from crawler.simulator import SimConfig, SimThread
from crawler.state.manifest import MANIFEST_NAME
from crawler.stops import EXIT_OK

ALL = {"browsingLevel": "31"}
CAP = 400


def _fetches(sim: SimThread) -> collections.Counter:
    return collections.Counter(e.path.split("/")[2] for e in sim.log.entries("cdn") if e.status == 200)


def _ends(out: Path) -> list[dict]:
    return [r for r in records(out) if r["kind"] == "run" and r["event"] == "end"]


def test_follow_deep_proves_each_pass_complete_and_picks_up_new_uploads(tmp_path):
    with SimThread(SimConfig(images=1500, seed=151, depth_cap=CAP)) as sim:
        args = [sys.executable, "-m", "crawler", "follow", "--out", str(tmp_path), "--deep", "--passes", "2",
                "--interval", "3s", *flags_list(sim.api_base, browsing_level=31, depth_cap=CAP)]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        added: list[int] = []

        def add_after_first_pass() -> None:  # while follow sleeps between its passes
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and proc.poll() is None:
                if (tmp_path / MANIFEST_NAME).exists() and _ends(tmp_path):
                    added.extend(sim.catalogue.add_new(30))
                    return
                time.sleep(0.05)

        adder = threading.Thread(target=add_after_first_pass)
        adder.start()
        _, err = proc.communicate(timeout=110)
        adder.join()
        expected = sim.catalogue.expected(ALL)
        fetched = _fetches(sim)
    assert proc.returncode == EXIT_OK, err[-2000:]
    first, second = _ends(tmp_path)
    assert first["reason"] == second["reason"] == "feed-ended", (first["message"], second["message"])
    assert "--deep proved the listing complete" in first["message"]
    assert len(added) == 30 and len(expected) == 1530
    assert_complete(tmp_path, expected)
    ids = [r["id"] for r in done_records(tmp_path)]
    assert len(ids) == len(set(ids)) == 1530
    assert max(fetched.values()) == 1 and sum(fetched.values()) == 1530, "an image was fetched twice"


def test_max_images_with_deep_stops_at_exactly_n_and_a_rerun_does_not_exceed_it(tmp_path):
    def crawl(api_base: str) -> subprocess.CompletedProcess:
        return cli("crawl", "--out", str(tmp_path), "--deep", "--max-images", "230",
                   *flags_list(api_base, browsing_level=31, depth_cap=CAP), timeout=120)

    with SimThread(SimConfig(images=1500, seed=152, depth_cap=CAP)) as sim:
        first = crawl(sim.api_base)
        after_first = len(done_records(tmp_path))
        second = crawl(sim.api_base)
        fetched = _fetches(sim)
    assert first.returncode == second.returncode == EXIT_OK, first.stderr[-2000:] + second.stderr[-2000:]
    assert after_first == 230 and "--max-images 230 reached" in first.stderr.strip().splitlines()[-1]
    assert len(done_records(tmp_path)) == 230 and sum(fetched.values()) == 230
    assert [r["reason"] for r in _ends(tmp_path)] == ["max-images", "max-images"]
