"""--out s3://bucket/prefix against a real S3 API (moto's server on 127.0.0.1), credentials from the environment."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from conftest import _NullLog, cli, crawl_config, done_records, effective, flags_list

from crawler.run.crawl import EXIT_OK, Crawl
from crawler.simulator import FaultConfig, SimConfig, SimThread
from crawler.state.manifest import MANIFEST_NAME

pytest_plugins = ["s3_fixture"]
pytestmark = pytest.mark.timeout(240)

ALL = {"browsingLevel": "31"}
FAULTS = FaultConfig(cdn_500=0.05, cdn_reset=0.03, cdn_truncate=0.03, api_503=0.05, duplicate=0.1, retry_after=0.05)


def assert_bucket_complete(s3, bucket: str, prefix: str, state: Path, expected: dict[int, str]) -> None:
    """Every expected image is an object whose bytes hash as the catalogue says, and nothing else is there."""
    latest = {k: r for k, r in effective(state).items() if r["status"] == "done"}
    assert set(latest) == set(expected), f"missing {sorted(set(expected) - set(latest))[:5]}"
    keys = set(s3.list_keys(bucket, prefix + "/"))
    assert keys == {f"{prefix}/{r['path']}" for r in latest.values()}, "objects differ from the manifest"
    for key, record in latest.items():
        body = s3.get(bucket, f"{prefix}/{record['path']}")
        assert hashlib.sha256(body).hexdigest() == expected[key] == record["sha256"]
    assert s3.list_uploads(bucket) == [], "an unfinished upload is left behind"


async def test_mirror_to_s3_with_faults_is_complete_verifies_and_exports(s3_env, s3_bucket, sim_factory, tmp_path):
    out = f"s3://{s3_bucket}/mirror"
    state = tmp_path / "state"
    async with sim_factory(images=300, seed=91, faults=FAULTS) as sim:
        cfg = crawl_config(out, sim.api_base, browsing_level=31, state=state)
        outcome = await Crawl(cfg, log=_NullLog()).run()
        expected = sim.catalogue.expected(ALL)
    assert outcome.reason == "feed-ended" and outcome.exit_code == EXIT_OK
    assert_bucket_complete(s3_env, s3_bucket, "mirror", state, expected)
    env = {**os.environ, **s3_env.env}
    result = cli("verify", "--out", out, "--state", str(state), env=env)
    assert result.returncode == 0 and f"verified {len(expected)} file(s): 0 problem(s)" in result.stdout, result.stderr
    # A damaged object is named by verify.
    victim = next(iter(effective(state).values()))
    s3_env.client.put_object(Bucket=s3_bucket, Key=f"mirror/{victim['path']}", Body=b"not the image")
    result = cli("verify", "--out", out, "--state", str(state), env=env)
    assert result.returncode == 1 and f"mismatch: {victim['path']}" in result.stdout
    shards = tmp_path / "shards"
    result = cli("export", "--out", out, "--state", str(state), "--format", "webdataset", "--to", str(shards), env=env)
    assert result.returncode == 0, result.stderr
    names = []
    for shard in sorted(shards.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                names.append(member.name)
                if member.name.endswith(".jpg") and member.name != f"{victim['id']}.jpg":
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    assert hashlib.sha256(data).hexdigest() == expected[int(member.name.split(".")[0])]
    assert len([n for n in names if n.endswith(".json")]) == len(expected)
    captions = tmp_path / "captions"
    result = cli("export", "--out", out, "--state", str(state), "--format", "captions", "--to", str(captions), env=env)
    assert result.returncode == 0 and "hard-linked" in result.stdout, result.stderr
    copied = sorted(p for p in captions.iterdir() if p.suffix != ".txt")
    assert copied and all((p.with_suffix(".txt")).exists() for p in copied)
    for image in copied[:20]:
        if int(image.stem) != victim["id"]:
            assert hashlib.sha256(image.read_bytes()).hexdigest() == expected[int(image.stem)]
    result = cli("status", "--out", out, "--state", str(state), env=env)
    assert result.returncode == 0 and f"done:    {len(expected)} images" in result.stdout


def test_kill_9_leaves_no_partial_object_and_resumes(s3_server, s3_bucket, tmp_path):
    """Bodies past the 8 MiB part size go up as multipart uploads: a kill -9 leaves unfinished uploads,
    never an object at a final key; the next run aborts them and completes the mirror."""
    out = f"s3://{s3_bucket}/big"
    state = tmp_path / "state"
    env = {**os.environ, **s3_server.env}
    with SimThread(SimConfig(images=24, seed=92, body_bytes=10 * 1024 * 1024)) as sim:
        args = [sys.executable, "-m", "crawler", "crawl", "--out", out, "--state", str(state),
                *flags_list(sim.api_base, browsing_level=31, cdn_rps=6, concurrency=4)]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill once some images are done and others are half uploaded
            manifest = state / MANIFEST_NAME
            done = manifest.read_bytes().count(b'"status":"done"') if manifest.exists() else 0
            if done >= 3 and s3_server.list_uploads(s3_bucket):
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        else:
            raise AssertionError("never saw an upload in flight")
        proc.kill()
        proc.wait(10)
        expected = sim.catalogue.expected(ALL)
        # After the kill: unfinished uploads exist, and every object at a final key is complete.
        assert s3_server.list_uploads(s3_bucket)
        for key in s3_server.list_keys(s3_bucket, "big/"):
            image_id = int(key.rsplit("/", 1)[1].split(".")[0])
            assert hashlib.sha256(s3_server.get(s3_bucket, key)).hexdigest() == expected[image_id], f"partial {key}"
        result = cli("crawl", "--out", out, "--state", str(state),
                     *flags_list(sim.api_base, browsing_level=31, concurrency=4), env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "unfinished upload(s) left by a killed run" in result.stderr
    assert_bucket_complete(s3_server, s3_bucket, "big", state, expected)
    keys = [r["id"] for r in done_records(state)]
    assert len(keys) == len(set(keys))


async def test_ray_actors_write_straight_to_s3(ray_cluster, s3_env, s3_bucket, sim_factory, tmp_path):
    out = f"s3://{s3_bucket}/ray"
    state = tmp_path / "state"
    async with sim_factory(images=400, seed=93, faults=FAULTS) as sim:
        cfg = crawl_config(out, sim.api_base, browsing_level=31, executor="ray", ray_address=ray_cluster,
                           download_workers=2, state=state)
        outcome = await Crawl(cfg, log=_NullLog()).run()
        expected = sim.catalogue.expected(ALL)
    assert outcome.exit_code == EXIT_OK, outcome.message
    assert_bucket_complete(s3_env, s3_bucket, "ray", state, expected)


def test_object_store_usage_errors_are_one_line(s3_server, tmp_path):
    env = {**os.environ, **s3_server.env}
    result = cli("crawl", "--out", "s3://some-bucket/x", env=env)
    assert result.returncode == 2 and "give --state DIR" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = cli("crawl", "--out", "s3://no-such-bucket-here/x", "--state", str(tmp_path / "s"),
                 "--api-base", "http://127.0.0.1:9/api/v1", env=env)
    assert result.returncode == 2 and "no-such-bucket-here" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    result = cli("crawl", "--out", str(tmp_path / "m"), "--storage-option", "anon=true", env=env)
    assert result.returncode == 2 and "only applies when --out is an object store" in result.stderr
    result = cli("crawl", "--out", "s3://b/x", "--state", str(tmp_path / "s"), "--storage-option", "secretvalue", env=env)
    assert result.returncode == 2 and "secretvalue" not in result.stderr


async def test_an_error_inside_the_actors_stops_the_crawl_with_its_cause(ray_cluster, s3_env, s3_bucket, sim_factory,
                                                                         tmp_path, monkeypatch):
    """The bucket disappears between the driver's check and the actors' first use of it: the actors'
    store refuses them, and the crawl stops saying so instead of bouncing the work between actors."""
    from crawler.run import ray_executor
    placed = ray_executor.RayDispatch.__aenter__

    async def then_drop_the_bucket(self):  # type: ignore[no-untyped-def]
        entered = await placed(self)
        s3_env.client.delete_bucket(Bucket=s3_bucket)
        return entered

    monkeypatch.setattr(ray_executor.RayDispatch, "__aenter__", then_drop_the_bucket)
    async with sim_factory(images=100, seed=94) as sim:
        cfg = crawl_config(f"s3://{s3_bucket}/gone", sim.api_base, browsing_level=31, executor="ray",
                           ray_address=ray_cluster, download_workers=2, state=tmp_path / "state")
        outcome = await Crawl(cfg, log=_NullLog()).run()
    assert outcome.reason == "executor-failed" and outcome.exit_code == 1
    assert "download worker" in outcome.message and s3_bucket in outcome.message, outcome.message
    assert not done_records(tmp_path / "state")


async def test_follow_waits_out_an_object_store_outage(s3_env, s3_bucket, sim_factory, tmp_path):
    from crawler.run.follow import Follower, FollowSettings
    reasons = []

    async def after(n, outcome):  # type: ignore[no-untyped-def]
        reasons.append(outcome.reason)
        if n == 1:  # the bucket goes away (its objects first), then comes back before pass 4
            for key in s3_env.list_keys(s3_bucket):
                s3_env.client.delete_object(Bucket=s3_bucket, Key=key)
            s3_env.client.delete_bucket(Bucket=s3_bucket)
        if n == 3:
            s3_env.make_bucket(s3_bucket)

    async with sim_factory(images=60, seed=95) as sim:
        cfg = crawl_config(f"s3://{s3_bucket}/f", sim.api_base, browsing_level=31, state=tmp_path / "state")
        log = _NullLog()
        follower = Follower(cfg, FollowSettings(interval=0.05, passes=4, outage_backoff_max=0.2), log, after_pass=after)
        code = await follower.run()
    text = "".join(log.lines)
    assert code == 0 and reasons[1:3] == ["store-unavailable"] * 2 and reasons[3] in ("feed-ended", "since-reached")
    assert text.count("the object store is unavailable") == 1 and "the object store is back after 2 failed pass(es)" in text
