"""Today's CivitAI (issue 14) end to end: split sites, cursors gone stale after a backend switch, the item
and URL shapes of recorded 2026 responses, and tags -- each through the simulator over real sockets.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST, assert_complete, cli, done_records, records

from crawler.run.crawl import EXIT_FAILED, EXIT_OK
from crawler.simulator import FaultConfig, SimConfig, SimThread
from crawler.simulator.shapes import pick_url
from crawler.simulator.tags import TAGS, tag_ids
from crawler.state.manifest import MANIFEST_NAME
from crawler.state.records import durable_upto, is_run_end

ALL = {"browsingLevel": "31"}
RESTARTED = "restarting this chain from its first page"


def crawl_args(out: Path, api_base: str, *switches: str, **flags: Any) -> list[str]:
    """`crawl` with the tests' fast defaults; `switches` are bare boolean flags such as --with-tags."""
    values = {**FAST, "api_base": api_base, **flags}
    args = ["crawl", "--out", str(out)]
    for name, value in values.items():
        for one in value if isinstance(value, (list, tuple)) else [value]:
            args += ["--" + name.replace("_", "-"), str(one)]
    return [*args, *switches]


def _wait_for_checkpoint(out: Path, proc: subprocess.Popen, limit: float = 30.0) -> None:
    """Until a checkpoint with a cursor is vouched for by a `durable` marker: one past the last marker
    is not trusted by a resume (it walks from the first page), so killing before it tests nothing."""
    deadline = time.monotonic() + limit
    manifest = out / MANIFEST_NAME
    while time.monotonic() < deadline:
        data = manifest.read_bytes() if manifest.exists() else b""
        at = data.find(b'"cursor":"')
        if at >= 0 and any((durable_upto(json.loads(line)) or 0) > at
                           for line in data[at:].splitlines()[1:] if line.endswith(b"}")):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    pytest.fail("no checkpoint with a cursor was vouched for by a durable marker")


# -- cursors that go stale ------------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_kill_9_then_a_backend_switch_then_resume_ends_complete(tmp_path):
    with SimThread(SimConfig(images=600, seed=161, stale_cursors=True)) as sim:
        slow = crawl_args(tmp_path, sim.api_base, browsing_level=31, limit=20, cdn_rps=150, concurrency=2)
        proc = subprocess.Popen([sys.executable, "-m", "crawler", *slow], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        _wait_for_checkpoint(tmp_path, proc)
        proc.kill()
        proc.wait(10)
        sim.switch_backend()  # every cursor issued so far, the saved one included, now answers 400
        resumed = cli(*crawl_args(tmp_path, sim.api_base, browsing_level=31, limit=20), timeout=100)
        expected = sim.catalogue.expected(ALL)
        refused = [e for e in sim.log.entries("api") if e.status == 400]
    assert resumed.returncode == EXIT_OK, resumed.stderr[-2000:]
    assert_complete(tmp_path, expected)
    assert len(refused) == 1
    assert [line for line in resumed.stderr.splitlines() if RESTARTED in line] != []
    assert sum(RESTARTED in line for line in resumed.stderr.splitlines()) == 1
    ends = [r for r in records(tmp_path) if is_run_end(r)]
    assert ends and ends[-1]["reason"] == "feed-ended", ends[-1:]


# -- sites ----------------------------------------------------------------------------------------------

def test_a_site_answering_next_page_only_is_followed_on_the_host_called(tmp_path):
    with SimThread(SimConfig(images=150, seed=162, sites=True, faults=FaultConfig(null_cursor=1.0))) as sim:
        red = f"{sim.origin}/red/api/v1"
        done = cli(*crawl_args(tmp_path, red, browsing_level=31, limit=20))
        expected = sim.catalogue.expected(ALL)
        paths = [e.path for e in sim.log.entries("api")]
    assert done.returncode == EXIT_OK, done.stderr[-2000:]
    assert_complete(tmp_path, expected)
    assert len(paths) > 5 and all(p.startswith("/red/api/v1/images") for p in paths), paths[:3]
    assert "levels above PG-13" not in done.stderr


def test_an_sfw_only_site_warns_once_naming_the_likely_causes(tmp_path):
    with SimThread(SimConfig(images=200, seed=163, sites=True)) as sim:
        green = cli(*crawl_args(tmp_path / "green", f"{sim.origin}/green/api/v1", browsing_level=31, limit=20))
        sfw = cli(*crawl_args(tmp_path / "sfw", f"{sim.origin}/green/api/v1", browsing_level=3, limit=20))
        red = cli(*crawl_args(tmp_path / "red", f"{sim.origin}/red/api/v1", browsing_level=31, limit=20))
    assert green.returncode == sfw.returncode == red.returncode == EXIT_OK, green.stderr[-2000:]
    warnings = [line for line in green.stderr.splitlines() if "levels above PG-13" in line]
    assert len(warnings) == 1 and "no API key" in warnings[0] and "region" in warnings[0], green.stderr
    assert "levels above PG-13" not in sfw.stderr + red.stderr  # asked for SFW; or got mature items


def test_anonymous_callers_capped_at_sfw_are_told_and_a_key_gets_every_level(tmp_path):
    with SimThread(SimConfig(images=120, seed=164, anonymous_sfw=True)) as sim:
        anonymous = cli(*crawl_args(tmp_path / "anon", sim.api_base, browsing_level=31))
        keyed = cli(*crawl_args(tmp_path / "key", sim.api_base, browsing_level=31), env={"CIVITAI_API_KEY": "k-1"})
        expected = sim.catalogue.expected(ALL)
    assert anonymous.returncode == keyed.returncode == EXIT_OK, anonymous.stderr[-2000:]
    assert "no API key" in anonymous.stderr and "levels above PG-13" not in keyed.stderr
    assert_complete(tmp_path / "key", expected)
    assert 0 < len(done_records(tmp_path / "anon")) < len(expected)


# -- shapes ---------------------------------------------------------------------------------------------

def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", [{}, {"width": 320}, {"original": None}])
def test_every_recorded_shape_crawls_and_exports_without_a_gone_or_a_crash(tmp_path, size):
    with SimThread(SimConfig(images=400, seed=165, real_shapes=True)) as sim:
        switches = ["--original"] if "original" in size else []
        flags = {k: v for k, v in size.items() if v is not None}
        done = cli(*crawl_args(tmp_path, sim.api_base, *switches, browsing_level=31, type="image", **flags))
        expected = sim.catalogue.expected({**ALL, "type": "image"}, size.get("width"), "original" in size)
        forms = {pick_url(sim.catalogue.record(i)) for i in expected}  # type: ignore[arg-type]
    assert done.returncode == EXIT_OK, done.stderr[-2000:]
    assert {"b2-bare", "b2-options", "upload-name", "options-mixed", "original-quality", None} <= forms
    assert_complete(tmp_path, expected)  # the right bytes for every form; none called gone
    assert not [r for r in records(tmp_path) if r.get("status") in ("gone", "failed")]
    if size:
        assert sum("fetched as listed" in line for line in done.stderr.splitlines()) == 1
    exported = cli("export", "--out", str(tmp_path), "--format", "jsonl", "--to", str(tmp_path / "rows.jsonl"))
    assert exported.returncode == 0, exported.stderr
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "rows.jsonl").read_text().splitlines())}
    items = {r["id"]: r["item"] for r in done_records(tmp_path)}
    assert set(rows) == set(expected)
    for image_id, item in items.items():
        row = rows[image_id]
        username = item.get("username")
        assert row["username"] == (None if username is None else str(username))  # a number becomes its text
        if item.get("stats") and all(v is None for v in item["stats"].values()):
            assert row["like_count"] is None and row["reactions"] is None  # null counters stay null
        if isinstance(item.get("meta"), dict) and "workflow" in item["meta"]:
            assert json.loads(row["meta_json"])["workflow"] == item["meta"]["workflow"]  # not JSON: kept as text
        assert row["tags"] == []
    assert any(isinstance(i.get("username"), int) for i in items.values())
    assert any("type" not in i for i in items.values())


# -- tags -----------------------------------------------------------------------------------------------

def test_tag_ids_filter_the_feed_and_with_tags_keeps_them_for_export_and_captions(tmp_path):
    wanted = [4, 111]
    with SimThread(SimConfig(images=150, seed=166)) as sim:
        done = cli(*crawl_args(tmp_path, sim.api_base, "--with-tags", browsing_level=31, tag_id=wanted))
        expected = sim.catalogue.expected({**ALL, "tags": "4,111"})
        sent = sim.log.entries("api")
        names = {i: sorted(TAGS[t] for t in tag_ids(sim.catalogue.record(i))) for i in expected}  # type: ignore[arg-type]
    assert done.returncode == EXIT_OK, done.stderr[-2000:]
    assert 0 < len(expected) < 150
    assert_complete(tmp_path, expected)
    assert sent and all(e.query.get("tags") == "4,111" and e.query.get("withTags") == "true" for e in sent), sent[0]
    exported = cli("export", "--out", str(tmp_path), "--format", "jsonl", "--to", str(tmp_path / "rows.jsonl"))
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert {r["id"]: sorted(r["tags"]) for r in rows} == names
    captions = cli("export", "--out", str(tmp_path), "--format", "captions", "--to", str(tmp_path / "cap"),
                   "--caption-field", "tags")
    assert captions.returncode == 0, captions.stderr
    some = rows[0]
    text = (tmp_path / "cap" / f"{some['key']}.txt").read_text().strip()
    assert sorted(text.split(", ")) == names[some["id"]]


# -- videos and audio -----

def test_videos_take_their_own_size_and_a_still_answer_is_failed_then_retried(tmp_path):
    with SimThread(SimConfig(images=400, seed=167, real_shapes=True)) as sim:
        sized = cli(*crawl_args(tmp_path, sim.api_base, browsing_level=31, type="video", video_width=320))
        cat, video = sim.catalogue, {**ALL, "type": "video"}
        at_320, stills = cat.expected(video, video_width=320), cat.expected_stills(video, video_width=320)
        ids = set(at_320) | stills
        bare = {i for i in ids if pick_url(cat.record(i)) == "b2-bare"}  # type: ignore[arg-type]
        whole = cli(*crawl_args(tmp_path, sim.api_base, "--video-original", browsing_level=31, type="video"))
        originals = {i: _sha(cat.body(i, None, True)[0]) for i in ids}
    assert sized.returncode == EXIT_FAILED, sized.stderr[-2000:]  # some failed: a rerun retries them
    assert stills and bare
    first = [r for r in records(tmp_path) if r["kind"] == "image"][: len(ids)]
    failed = {r["id"] for r in first if r["status"] == "failed" and r["reason"] == "video-as-still"}
    assert failed == stills
    assert {r["id"]: r["sha256"] for r in first if r["status"] == "done"} == at_320
    assert whole.returncode == EXIT_OK, whole.stderr[-2000:]
    latest = {r["id"]: r for r in records(tmp_path) if r["kind"] == "image"}
    assert {i for i, r in latest.items() if r["status"] == "done"} == ids  # the stills were retried
    assert all(latest[i]["sha256"] == originals[i] for i in stills)


def test_audio_items_are_mirrored_as_listed(tmp_path):
    with SimThread(SimConfig(images=600, seed=168, real_shapes=True)) as sim:
        done = cli(*crawl_args(tmp_path, sim.api_base, browsing_level=31, type="audio", width=320))
        expected = sim.catalogue.expected({**ALL, "type": "audio"})
    assert done.returncode == EXIT_OK, done.stderr[-2000:]
    assert expected
    assert_complete(tmp_path, expected)  # never resized: as listed
