"""What a new user runs into: export targets that are missing or unusable, re-exports, interruptions, pipes.

Each test runs the real command as a subprocess on a mirror crawled from the simulator over loopback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from conftest import cli, done_records, flags_list, run_crawl

from crawler.export.dataset import FORMATS
from crawler.simulator import SimConfig, SimThread
from crawler.stops import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

FILE_FORMATS = ("jsonl", "parquet")


@pytest.fixture
async def mirror(sim_factory, tmp_path):
    async with sim_factory(images=40, seed=15) as sim:
        await run_crawl(tmp_path / "m", sim.api_base, browsing_level=31)
    return tmp_path / "m"


def _target(base: Path, fmt: str) -> Path:
    return base / ("out.jsonl" if fmt == "jsonl" else "out.parquet" if fmt == "parquet" else "out")


@pytest.mark.parametrize("fmt", FORMATS)
async def test_export_creates_missing_folders(mirror, tmp_path, fmt):
    to = _target(tmp_path / "new" / "deeper", fmt)
    result = cli("export", "--out", str(mirror), "--format", fmt, "--to", str(to))
    assert result.returncode == EXIT_OK, result.stderr
    assert to.exists() and "Traceback" not in result.stderr


@pytest.mark.parametrize("fmt", FORMATS)
async def test_export_to_an_impossible_folder_is_one_line_and_exit_2(mirror, tmp_path, fmt):
    (tmp_path / "a-file").write_text("not a folder")
    to = _target(tmp_path / "a-file" / "sub", fmt)  # a folder can never be made under a file (even as root)
    result = cli("export", "--out", str(mirror), "--format", fmt, "--to", str(to))
    assert result.returncode == EXIT_USAGE, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot create the folder" in lines[0] and "Errno" not in lines[0], result.stderr


async def test_captions_go_into_an_existing_folder_of_ours_and_refuse_a_strangers(mirror, tmp_path):
    folder = tmp_path / "captions"
    folder.mkdir()
    first = cli("export", "--out", str(mirror), "--format", "captions", "--to", str(folder))
    assert first.returncode == EXIT_OK, first.stderr
    again = cli("export", "--out", str(mirror), "--format", "captions", "--to", str(folder))
    assert again.returncode == EXIT_OK, again.stderr  # our own earlier export is fine
    (folder / "holiday.jpg").write_bytes(b"someone else's")
    refused = cli("export", "--out", str(mirror), "--format", "captions", "--to", str(folder))
    assert refused.returncode == EXIT_USAGE and "holiday.jpg" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


async def test_webdataset_reexport_replaces_the_old_shards(mirror, tmp_path):
    to = tmp_path / "wds"
    small = cli("export", "--out", str(mirror), "--format", "webdataset", "--to", str(to), "--shard-size", "5")
    assert small.returncode == EXIT_OK, small.stderr
    assert len(list(to.glob("*.tar"))) > 2
    big = cli("export", "--out", str(mirror), "--format", "webdataset", "--to", str(to), "--shard-size", "1000")
    assert big.returncode == EXIT_OK, big.stderr
    shards = sorted(to.glob("*.tar"))
    assert [p.name for p in shards] == ["00000.tar"]
    with tarfile.open(shards[0]) as tar:
        samples = [m.name for m in tar.getmembers() if m.name.endswith(".json")]
    assert len(samples) == len(set(samples)) == len(done_records(mirror))


@pytest.mark.parametrize("fmt", ["jsonl", "captions"])
def test_interrupted_export_leaves_no_part(tmp_path, fmt):
    with SimThread(SimConfig(images=1500, seed=3, body_bytes=2000)) as sim:
        crawled = cli("crawl", "--out", str(tmp_path / "m"), *flags_list(sim.api_base, browsing_level=31, limit=200))
    assert crawled.returncode == EXIT_OK, crawled.stderr
    to = _target(tmp_path / "x", fmt)
    process = subprocess.Popen([sys.executable, "-m", "crawler", "export", "--out", str(tmp_path / "m"), "--format",
                                fmt, "--to", str(to)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not list((tmp_path / "x").rglob("*.part")) and not list(to.parent.glob("*.txt")):
            assert time.monotonic() < deadline and process.poll() is None, "the export never started writing"
            time.sleep(0.005)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err
    assert not list((tmp_path / "x").rglob("*.part"))


def test_sim_exits_130_on_ctrl_c():
    process = subprocess.Popen([sys.executable, "-m", "crawler", "sim", "--port", "0", "--images", "5"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().startswith("listening on")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == EXIT_INTERRUPTED
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("reader", ["head -1", "true"])
def test_config_show_into_a_closed_pipe_has_no_traceback(tmp_path, reader):
    # `config show | head -1`; `| true` closes its end before a byte is written, so the write always fails.
    shell = f"{sys.executable} -m crawler config show --out {tmp_path} | {reader}"
    result = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, timeout=60, env=os.environ)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
    assert result.stdout.startswith("out") or reader == "true"
