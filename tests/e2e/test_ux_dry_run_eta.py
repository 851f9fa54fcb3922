"""A `crawl --dry-run` saves its count in the mirror, and a later crawl of the same query shows an ETA from it.

Through the real command against the simulator over loopback, on real files; progress in log mode.
"""

from __future__ import annotations

import json
import re

from conftest import cli, flags_list

from crawler.simulator import SimConfig, SimThread
from crawler.stops import EXIT_OK

COUNTS = "dry-run-counts.json"


def _run(sim: SimThread, out, *extra: str, **flags):
    return cli("crawl", "--out", str(out), *flags_list(sim.api_base, **flags), *extra)


def _matched(stdout: str) -> int:
    return int(re.search(r"matched:\s+(\d+) image", stdout).group(1))  # type: ignore[union-attr]


def _progress(stderr: str) -> list[str]:
    return [t for t in stderr.splitlines() if " img/s" in t and not t.split(" ", 1)[1].startswith("stopped")]


def test_a_dry_run_count_gives_the_next_crawl_of_the_query_an_eta(tmp_path):
    out = tmp_path / "m"
    slow = {"progress": "log", "log_interval": "0.1", "concurrency": 1, "cdn_rps": 150}
    with SimThread(SimConfig(images=300, seed=215)) as sim:
        dry = _run(sim, out, "--dry-run", browsing_level=31)
        assert not (out / "manifest.jsonl").exists() and not (out / "images").exists()
        saved = json.loads((out / COUNTS).read_text())
        crawl = _run(sim, out, browsing_level=31, **slow)
    assert dry.returncode == EXIT_OK and crawl.returncode == EXIT_OK, dry.stderr + crawl.stderr
    matched = _matched(dry.stdout)
    assert matched > 100 and "count saved in" in dry.stdout, dry.stdout
    [entry] = saved.values()
    assert (entry["matched"], entry["to_fetch"], entry["already_mirrored"]) == (matched, matched, 0)
    running = [t for t in _progress(crawl.stderr) if f"/{matched} (dry-run count)" in t]
    settling = [t for t in running if f"| 0/{matched}" not in t]  # (no rate, so no ETA, before the first image)
    assert len(settling) >= 3, crawl.stderr
    assert all(re.search(rf"\| \d+/{matched} \(dry-run count\), ETA \d+(s|m\d\ds)", t) for t in settling), running
    # The ETA comes down as the crawl goes (a little slack: the rate is measured as it runs).
    held = [int(re.search(rf"\| (\d+)/{matched}", t).group(1)) for t in running]  # type: ignore[union-attr]
    assert held == sorted(held) and held[-1] > held[0], running


def test_another_querys_count_gives_no_eta(tmp_path):
    out = tmp_path / "m"
    with SimThread(SimConfig(images=300, seed=216)) as sim:
        dry = _run(sim, out, "--dry-run", browsing_level=31)
        crawl = _run(sim, out, browsing_level=1, progress="log", log_interval="0.1", concurrency=1, cdn_rps=150)
    assert dry.returncode == EXIT_OK and crawl.returncode == EXIT_OK, dry.stderr + crawl.stderr
    progress = _progress(crawl.stderr)
    assert len(progress) >= 3, crawl.stderr
    assert not any("ETA" in t or "dry-run count" in t for t in progress), progress


def test_a_dry_run_of_a_partly_mirrored_query_counts_what_is_left_and_keeps_other_counts(tmp_path):
    out = tmp_path / "m"
    with SimThread(SimConfig(images=300, seed=217)) as sim:
        assert _run(sim, out, "--dry-run", browsing_level=1).returncode == EXIT_OK  # another query's count
        assert _run(sim, out, browsing_level=31, max_images=40).returncode == EXIT_OK
        manifest = (out / "manifest.jsonl").read_bytes()
        files = sorted(p.relative_to(out) for p in out.rglob("*") if p.name != COUNTS)
        stamps = {p: p.stat().st_mtime_ns for p in (out / "images").rglob("*")}
        dry = _run(sim, out, "--dry-run", browsing_level=31, max_images=1000)
        assert (out / "manifest.jsonl").read_bytes() == manifest  # not a byte more: no record of the dry run
        assert sorted(p.relative_to(out) for p in out.rglob("*") if p.name != COUNTS) == files
        assert {p: p.stat().st_mtime_ns for p in (out / "images").rglob("*")} == stamps
        crawl = _run(sim, out, browsing_level=31, progress="log", log_interval="0.1", concurrency=1, cdn_rps=150)
    assert dry.returncode == EXIT_OK and crawl.returncode == EXIT_OK, dry.stderr + crawl.stderr
    entries = json.loads((out / COUNTS).read_text())
    assert len(entries) == 2  # the other query's count is kept beside this one's
    matched = _matched(dry.stdout)
    assert matched in {e["matched"] for e in entries.values()}
    assert [e["already_mirrored"] for e in entries.values() if e["matched"] == matched] == [40]
    # The crawl resumes after its 40 and shows them held from the start.
    first = next(t for t in _progress(crawl.stderr) if "dry-run count" in t)
    assert int(re.search(rf"\| (\d+)/{matched} \(dry-run count\)", first).group(1)) >= 40, first  # type: ignore[union-attr]
