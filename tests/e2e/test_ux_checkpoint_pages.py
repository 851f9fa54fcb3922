"""Checkpoint page numbers count a chain's pages over every run, not from 1 again after each resume."""

from __future__ import annotations

from conftest import cli, flags_list, records

from crawler.simulator import SimConfig, SimThread


def test_a_resumed_crawl_numbers_its_checkpoints_after_the_earlier_run(tmp_path):
    with SimThread(SimConfig(images=600, seed=223)) as sim:
        flags = flags_list(sim.api_base, browsing_level=31, limit=50, max_pages=2)
        first = cli("crawl", "--out", str(tmp_path), *flags)
        second = cli("crawl", "--out", str(tmp_path), *flags)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert "after checkpoint page 2" in second.stderr
    pages = [r["page"] for r in records(tmp_path) if r["kind"] == "checkpoint"]
    assert pages == [1, 2, 3, 4]
    assert "last checkpoint: page 4, cursor " in cli("status", "--out", str(tmp_path)).stdout
