"""What an overnight mirror needs: a log file, progress with elapsed time and ETA, follow saying what comes next.

Through the real command against the simulator over loopback, on real files.
"""

from __future__ import annotations

import json
import re

from conftest import cli, done_records, flags_list, records

from crawler.simulator import SimConfig, SimThread
from crawler.stops import EXIT_OK


def test_follow_says_when_the_next_pass_starts_and_never_cites_a_since_not_given(tmp_path):
    with SimThread(SimConfig(images=30, seed=8)) as sim:
        result = cli("follow", "--out", str(tmp_path / "m"), *flags_list(sim.api_base, browsing_level=31),
                     "--passes", "3", "--interval", "1s")
    assert result.returncode == EXIT_OK, result.stderr
    lines = result.stderr.splitlines()
    passes = [n for n, text in enumerate(lines) if re.search(r" pass \d: ", text)]
    assert len(passes) == 3, result.stderr
    for n in passes[:-1]:
        assert re.search(r"next pass at \d\d:\d\d:\d\d \(in [01]s\)", lines[n + 1]), result.stderr
    assert "--since" not in result.stderr
    assert "what earlier passes mirrored" in lines[passes[1]], result.stderr


def _crawl(sim: SimThread, out, *extra: str, **flags):
    return cli("crawl", "--out", str(out), *flags_list(sim.api_base, browsing_level=31, **flags), *extra)


def test_log_file_gets_the_log_lines_appended_in_text_and_json(tmp_path):
    log = tmp_path / "logs" / "crawl.log"
    log.parent.mkdir()
    with SimThread(SimConfig(images=40, seed=9)) as sim:
        first = _crawl(sim, tmp_path / "m", "--log-file", str(log), progress="log", log_interval="0.2",
                       max_images=10)
        second = _crawl(sim, tmp_path / "m", "--log-file", str(log), "--log-format", "json", progress="none")
    assert first.returncode == EXIT_OK and second.returncode == EXIT_OK, first.stderr + second.stderr
    lines = log.read_text().splitlines()
    text_part = [t for t in lines if not t.startswith("{")]
    json_part = [json.loads(t) for t in lines if t.startswith("{")]
    assert text_part == first.stderr.splitlines()  # the terminal's log mode, line for line
    assert lines[: len(text_part)] == text_part  # appended: the first run's lines are still first
    assert any("stopped:" in t for t in text_part) and any(r["msg"].startswith("stopped:") for r in json_part)
    assert [r["msg"] for r in json_part] == [json.loads(t)["msg"] for t in second.stderr.splitlines()]


def test_log_file_gets_progress_lines_while_the_terminal_shows_none(tmp_path):
    log = tmp_path / "crawl.log"
    with SimThread(SimConfig(images=300, seed=10)) as sim:
        result = _crawl(sim, tmp_path / "m", "--log-file", str(log), progress="none", log_interval="0.1",
                        concurrency=1, cdn_rps=200, max_images=200)
    assert result.returncode == EXIT_OK, result.stderr
    in_file = [t for t in log.read_text().splitlines() if " elapsed, " in t]
    on_terminal = [t for t in result.stderr.splitlines() if " elapsed, " in t]
    assert len(on_terminal) == 1 and on_terminal[0] in in_file  # the terminal: only the last line's totals
    assert len(in_file) >= 3, in_file


def test_progress_shows_elapsed_rate_and_an_eta_when_max_images_is_given(tmp_path):
    with SimThread(SimConfig(images=300, seed=11)) as sim:
        result = _crawl(sim, tmp_path / "m", progress="log", log_interval="0.1", concurrency=1, cdn_rps=200,
                        max_images=200)
    assert result.returncode == EXIT_OK, result.stderr
    progress = [t for t in result.stderr.splitlines() if " img/s" in t]
    assert progress, result.stderr
    assert all(re.search(r"\d+(m\d\ds|s|h\d\dm) elapsed, \d+\.\d img/s", t) for t in progress), progress
    running = [t for t in progress if "/200" in t]
    assert running and all(re.search(r"\d+/200, ETA ", t) for t in running[:-1] if "200/200" not in t), progress


def test_min_free_stops_cleanly_and_a_rerun_resumes(tmp_path):
    with SimThread(SimConfig(images=30, seed=12)) as sim:
        stopped = _crawl(sim, tmp_path / "m", "--min-free", "1000T")
        resumed = _crawl(sim, tmp_path / "m")
    assert stopped.returncode == 1, stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]
    assert "--min-free 1000T" in last and "free" in last and "Traceback" not in stopped.stderr
    assert resumed.returncode == EXIT_OK, resumed.stderr
    assert len(done_records(tmp_path / "m")) == 30


def test_compact_keeps_at_most_one_previous_copy(tmp_path):
    out = tmp_path / "m"
    with SimThread(SimConfig(images=40, seed=13)) as sim:
        for limit in ("10", "25"):
            assert _crawl(sim, out, max_images=limit).returncode == EXIT_OK
            before = (out / "manifest.jsonl").read_bytes()
            result = cli("compact", "--out", str(out))
            assert result.returncode == EXIT_OK, result.stderr
            assert (out / "manifest.jsonl.prev").read_bytes() == before  # the generation just replaced
    generations = sorted(p.name for p in out.iterdir() if p.name.startswith("manifest.jsonl") and p.is_file())
    assert [g for g in generations if g not in ("manifest.jsonl", "manifest.jsonl.prev")] == [], generations


def test_min_free_records_its_own_stop_reason(tmp_path):
    with SimThread(SimConfig(images=10, seed=14)) as sim:
        assert _crawl(sim, tmp_path / "m", "--min-free", "1000T").returncode == 1
    ends = [r for r in records(tmp_path / "m") if r.get("kind") == "run" and r.get("event") == "end"]
    assert ends[-1]["reason"] == "disk-reserve"
