"""The command as a user runs it: a real subprocess, real signals, real exit codes and output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_complete, cli, done_records, flags_list

from crawler.simulator import FaultConfig, SimConfig, SimThread
from crawler.state.manifest import MANIFEST_NAME

ALL = {"browsingLevel": "31"}


def spawn(out: Path, api_base: str, env: dict[str, str] | None = None, **flags) -> subprocess.Popen:
    args = [sys.executable, "-m", "crawler", "crawl", "--out", str(out), *flags_list(api_base, browsing_level=31, **flags)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def wait_for_done(out: Path, at_least: int, proc: subprocess.Popen, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"crawler exited early: {proc.communicate()}"
        path = out / MANIFEST_NAME
        if path.exists() and path.read_bytes().count(b'"status":"done"') >= at_least:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {at_least} done after {limit}s")


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "unrecognized arguments"),
    (["--limit", "0"], "--limit: must be at least 1"),
    (["--limit", "201"], "--limit: must be at most 200"),
    (["--width", "abc"], "--width: expected an integer"),
    (["--width", "0"], "--width: must be at least 1"),
    (["--width", "512", "--original"], "contradict"),
    (["--concurrency", "2.5"], "--concurrency: expected an integer"),
    (["--api-base", "ftp://example.invalid"], "--api-base must be an http(s) URL"),
    (["--sort", "Best"], "not one of"),
    (["--config", "/nonexistent/c.toml"], "does not exist"),
])
def test_bad_usage_exits_2_with_one_readable_line(tmp_path, args, message):
    result = cli("crawl", "--out", str(tmp_path / "m"), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("content, message", [
    ("concurrency = = 1\n", "not valid TOML"),
    ("concurency = 4\n", "unknown key 'concurency'"),
    ('cdn_rps = "lots"\n', "key 'cdn_rps': expected a number"),
    ("api_key = 'x'\n", "CIVITAI_API_KEY"),
])
def test_bad_config_file_exits_2_naming_the_problem(tmp_path, content, message):
    config = tmp_path / "c.toml"
    config.write_text(content)
    result = cli("crawl", "--out", str(tmp_path / "m"), "--config", str(config))
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unreadable_config_and_out_that_is_a_file(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = cli("crawl", "--out", str(a_file))
    assert result.returncode == 2 and "not a directory" in result.stderr
    unreadable = tmp_path / "dir.toml"
    unreadable.mkdir()
    result = cli("crawl", "--out", str(tmp_path / "m"), "--config", str(unreadable))
    assert result.returncode == 2 and "cannot read config file" in result.stderr


def test_missing_out_and_no_command(tmp_path):
    assert cli("crawl").returncode == 2
    assert cli().returncode == 2


def test_help_explains_every_option():
    from crawler.config import settings as config
    text = cli("crawl", "--help").stdout
    for option in config.OPTIONS:
        flag = {"with_meta": "--no-meta", "fsync": "--no-fsync"}.get(option.name, option.flag)
        assert flag in text, flag
    assert "--no-meta" in text and "CIVITAI_API_KEY" in text and "130" in text


def test_kill_9_then_resume_loses_nothing_and_downloads_little_twice(tmp_path):
    kills, concurrency = 3, 6
    with SimThread(SimConfig(images=900, seed=21, body_bytes=8192)) as sim:
        for round_ in range(kills):
            proc = spawn(tmp_path, sim.api_base, cdn_rps=400, concurrency=concurrency)
            wait_for_done(tmp_path, 150 * (round_ + 1), proc)
            proc.kill()
            proc.wait(10)
        result = cli("crawl", "--out", str(tmp_path), *flags_list(sim.api_base, browsing_level=31, concurrency=concurrency))
        expected = sim.catalogue.expected(ALL)
        fetched = sim.log.count(kind="cdn")
    assert result.returncode == 0, result.stderr
    assert_complete(tmp_path, expected)
    ids = [r["id"] for r in done_records(tmp_path)]
    assert len(ids) == len(set(ids)), "an image is recorded done twice"
    assert fetched - len(expected) <= kills * concurrency, f"{fetched - len(expected)} re-downloads"
    assert not list((tmp_path / ".partial").iterdir()), "orphaned .part files after the final run"


def test_sigterm_exits_130_promptly_flushes_and_resumes(tmp_path):
    key = "never-print-this-key-4242"
    with SimThread(SimConfig(images=800, seed=22)) as sim:
        proc = spawn(tmp_path, sim.api_base, env={"CIVITAI_API_KEY": key}, cdn_rps=200)
        wait_for_done(tmp_path, 100, proc)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 130 and time.monotonic() - started < 10
        assert key not in out + err and "interrupted" in err
        lines = (tmp_path / MANIFEST_NAME).read_bytes().splitlines()
        # The run's end was recorded (then made durable by the last group commit): the manifest was flushed.
        assert b'"reason":"interrupted"' in lines[-2] and b'"kind":"durable"' in lines[-1]
        result = cli("crawl", "--out", str(tmp_path), *flags_list(sim.api_base, browsing_level=31),
                     env={"CIVITAI_API_KEY": key})
        expected = sim.catalogue.expected(ALL)
    assert result.returncode == 0 and key not in result.stdout + result.stderr
    assert_complete(tmp_path, expected)


def test_second_signal_exits_at_once_without_partial_files(tmp_path):
    # Stalled downloads (20 s) under a 30 s grace: after the first signal the crawl would wait for them;
    # the second must end the process within 2 s of being sent, not when they finish.
    with SimThread(SimConfig(images=600, seed=23, faults=FaultConfig(cdn_stall=0.3, stall_seconds=20))) as sim:
        proc = spawn(tmp_path, sim.api_base, cdn_rps=100, timeout=30, shutdown_grace=30)
        try:
            wait_for_done(tmp_path, 20, proc)
            proc.send_signal(signal.SIGINT)
            time.sleep(0.3)
            assert proc.poll() is None, "the first signal ended the crawl: nothing left for the second to cut short"
            # Stalls answer after 20 s: one begun in the last 15 s is still hanging when the second signal lands.
            stalled = [e for e in sim.log.entries("cdn") if e.fault == "stall" and time.monotonic() - e.t < 15]
            proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
            while proc.poll() is None and time.monotonic() - sent < 15:
                time.sleep(0.01)
            took = time.monotonic() - sent
            proc.communicate(timeout=5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert stalled, "no stalled download was in flight at the second signal"
    assert took < 2.0, f"exited {took:.1f}s after the second signal"
    assert proc.returncode == 130
    assert not list((tmp_path / "images").rglob("*.part"))
    for record in done_records(tmp_path):
        assert (tmp_path / record["path"]).stat().st_size == record["bytes"]


def test_second_crawler_on_the_same_dir_is_refused_and_a_dead_ones_lock_is_taken_over(tmp_path):
    with SimThread(SimConfig(images=600, seed=24)) as sim:
        first = spawn(tmp_path, sim.api_base, cdn_rps=100)
        wait_for_done(tmp_path, 10, first)
        second = cli("crawl", "--out", str(tmp_path), *flags_list(sim.api_base))
        assert second.returncode == 2 and "in use by another civitai-mirror" in second.stderr
        assert str(first.pid) in second.stderr
        first.kill()
        first.wait(10)
        third = cli("crawl", "--out", str(tmp_path), *flags_list(sim.api_base, browsing_level=31))
        expected = sim.catalogue.expected(ALL)
    assert third.returncode == 0, third.stderr
    assert_complete(tmp_path, expected)


def test_verify_names_a_corrupted_and_a_missing_file(tmp_path):
    with SimThread(SimConfig(images=60, seed=25)) as sim:
        assert cli("crawl", "--out", str(tmp_path), *flags_list(sim.api_base)).returncode == 0
    ok = cli("verify", "--out", str(tmp_path))
    assert ok.returncode == 0 and "0 problem" in ok.stdout
    done = done_records(tmp_path)
    corrupted, missing = done[0]["path"], done[1]["path"]
    data = bytearray((tmp_path / corrupted).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    (tmp_path / corrupted).write_bytes(bytes(data))
    (tmp_path / missing).unlink()
    bad = cli("verify", "--out", str(tmp_path))
    assert bad.returncode == 1
    assert f"mismatch: {corrupted}" in bad.stdout and f"missing: {missing}" in bad.stdout


def test_status_json_tells_why_the_crawl_stopped(tmp_path):
    import json
    with SimThread(SimConfig(images=100, seed=26, gone=0.1)) as sim:
        cli("crawl", "--out", str(tmp_path), *flags_list(sim.api_base, browsing_level=31, max_images=40))
        gone_total = len(sim.catalogue.expected_gone(ALL))
    result = cli("status", "--out", str(tmp_path), "--json")
    data = json.loads(result.stdout)
    assert result.returncode == 0
    assert data["last_run"]["reason"] == "max-images" and data["done"] + data["gone"] == 40
    assert gone_total > 0
    text = cli("status", "--out", str(tmp_path)).stdout
    assert "max-images" in text and "done:" in text
    assert cli("status", "--out", str(tmp_path / "nope")).returncode == 2
