"""`civitai-mirror plan` and `crawl --plan`: partitions run as parallel cursor chains into one mirror."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
from conftest import _NullLog, assert_complete, cli, crawl_config, done_records, flags_list, records

from crawler.feed import partitions
from crawler.run.crawl import EXIT_OK, Crawl
from crawler.simulator import SimConfig, SimThread

ALL = {"browsingLevel": "31"}


def _plan(tmp_path: Path, api_base: str, *args: str) -> tuple[Path, list[dict]]:
    to = tmp_path / "plan.json"
    result = cli("plan", "--to", str(to), *args, *flags_list(api_base, browsing_level=31))
    assert result.returncode == 0, result.stderr
    return to, orjson.loads(to.read_bytes())["partitions"]


def _crawl(out: Path, api_base: str, plan: Path, **flags) -> tuple[int, str]:
    result = cli("crawl", "--out", str(out), "--plan", str(plan), *flags_list(api_base, browsing_level=31, **flags),
                 timeout=120)
    return result.returncode, result.stderr


def test_plan_by_username_mirrors_each_creator_once_with_checkpoints_per_partition(tmp_path):
    with SimThread(SimConfig(images=900, seed=81)) as sim:
        everyone = [i["username"] for i in sim.catalogue.items if i.get("username")]
        users = [name for name, _n in Counter(everyone).most_common(3)]
        plan, parts = _plan(tmp_path, sim.api_base, "--by", "username", *[arg for u in users for arg in ("--value", u)])
        code, err = _crawl(tmp_path / "m", sim.api_base, plan)
        expected: dict[int, str] = {}
        for user in users:
            expected.update(sim.catalogue.expected({**ALL, "username": user}))
    assert code == 0, err
    assert [p["settings"] for p in parts] == [{"username": u} for u in users]
    assert len(expected) > 30
    assert_complete(tmp_path / "m", expected)
    ends = [r for r in records(tmp_path / "m") if r["kind"] == "checkpoint" and r["end"]]
    # Each partition's chain ran to its own end and recorded it under its own identity.
    assert sorted(r["partition"] for r in ends) == sorted(f"username={u}" for u in users)
    assert len({r["query"] for r in ends}) == len(users)
    assert "all 3 partitions ended (feed-ended: 3)" in err


async def test_partitions_resume_each_from_its_own_checkpoint(sim_factory, tmp_path):
    async with sim_factory(images=1200, seed=82) as sim:
        bases = Counter(i.get("baseModel") for i in sim.catalogue.items if i.get("baseModel"))
        values = [b for b, _n in bases.most_common(2)]
        cfg = crawl_config(tmp_path, sim.api_base, browsing_level=31, limit=20, max_images=150)
        chosen = partitions.split(cfg, "base-model", values)
        first = await Crawl(cfg, log=_NullLog(), partitions=chosen).run()
        cfg_rest = crawl_config(tmp_path, sim.api_base, browsing_level=31, limit=20)
        log = _NullLog()
        second = await Crawl(cfg_rest, log=log, partitions=chosen).run()
        expected: dict[int, str] = {}
        for value in values:
            expected.update(sim.catalogue.expected({**ALL, "baseModels": value}))
    assert first.reason == "max-images" and second.exit_code == EXIT_OK
    assert "resuming" in "".join(log.lines) and "after checkpoint page" in "".join(log.lines)
    assert_complete(tmp_path, expected)
    keys = [r["id"] for r in done_records(tmp_path)]
    assert len(keys) == len(set(keys))


def test_plan_by_period_covers_the_whole_feed_once(tmp_path):
    with SimThread(SimConfig(images=1000, seed=83)) as sim:
        plan, parts = _plan(tmp_path, sim.api_base, "--by", "period")
        code, err = _crawl(tmp_path / "m", sim.api_base, plan)
        expected = sim.catalogue.expected(ALL)
        day = set(sim.catalogue.expected({**ALL, "period": "Day"}))
    assert code == 0, err
    assert [p["name"] for p in parts] == ["period=Day", "period=Week-not-Day", "period=Month-not-Week",
                                          "period=Year-not-Month", "period=AllTime-not-Year"]
    assert all("until" in p["settings"] for p in parts[1:])
    assert_complete(tmp_path / "m", expected)
    keys = [r["id"] for r in done_records(tmp_path / "m")]
    assert len(keys) == len(set(keys)), "an image fetched by two windows"
    assert day, "the simulator's Day window is empty: the test would not show the windows at work"


def test_plan_usage_errors_are_one_line(tmp_path):
    result = cli("plan", "--to", str(tmp_path / "p.json"), "--by", "username")
    assert result.returncode == 2 and "--value" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = cli("plan", "--to", str(tmp_path / "p.json"), "--by", "username", "--value", "a", "--username", "b")
    assert result.returncode == 2 and "drop it from the query" in result.stderr
    result = cli("plan", "--to", str(tmp_path / "p.json"), "--by", "period", "--sort", "Oldest")
    assert result.returncode == 2 and "--sort Newest" in result.stderr
    (tmp_path / "bad.json").write_text('{"version": 1, "partitions": [{"name": "x", "settings": {"api_base": "h"}}]}')
    result = cli("crawl", "--out", str(tmp_path / "m"), "--plan", str(tmp_path / "bad.json"))
    assert result.returncode == 2 and "cannot be set by a partition" in result.stderr
    result = cli("crawl", "--out", str(tmp_path / "m"), "--plan", str(tmp_path / "missing.json"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_a_plan_for_another_query_is_refused(tmp_path):
    with SimThread(SimConfig(images=50, seed=84)) as sim:
        plan, _parts = _plan(tmp_path, sim.api_base, "--by", "username", "--value", "a")
        result = cli("crawl", "--out", str(tmp_path / "m"), "--plan", str(plan), *flags_list(sim.api_base))
    assert result.returncode == 2 and "was made for the query" in result.stderr


def test_an_expired_period_plan_is_refused_and_a_running_crawl_stops_when_its_plan_expires(tmp_path):
    from datetime import datetime, timedelta, timezone
    made = datetime.now(timezone.utc) - timedelta(hours=30)
    assert partitions.expires({"by": "username"}) is None
    assert partitions.expires({"by": "period", "created": made.isoformat(), "overlap_seconds": 86400}) < made.timestamp() + 86401
    with SimThread(SimConfig(images=600, seed=85)) as sim:
        plan, _parts = _plan(tmp_path, sim.api_base, "--by", "period", "--overlap", "8s")
        data = orjson.loads(plan.read_bytes())
        old = dict(data, created=made.isoformat())
        stale = tmp_path / "stale.json"
        stale.write_bytes(orjson.dumps(old))
        code, err = _crawl(tmp_path / "m", sim.api_base, stale)
        assert code == 2 and "make a new plan" in err.lower() and len(err.strip().splitlines()) == 1
        # A slow crawl outlives the 8 s overlap: it stops, resumably, saying why.
        code, err = _crawl(tmp_path / "m", sim.api_base, plan, cdn_rps=40)
    assert code == 1, err
    assert "plan's period windows expired" in err
    ends = [r for r in records(tmp_path / "m") if r["kind"] == "run" and r["event"] == "end"]
    assert ends[-1]["reason"] == "plan-expired"


async def test_max_images_counts_across_partitions(sim_factory, tmp_path):
    async with sim_factory(images=900, seed=86) as sim:
        everyone = [i["username"] for i in sim.catalogue.items if i.get("username")]
        users = [name for name, _n in Counter(everyone).most_common(3)]
        cfg = crawl_config(tmp_path, sim.api_base, browsing_level=31, max_images=40, limit=10)
        outcome = await Crawl(cfg, log=_NullLog(), partitions=partitions.split(cfg, "username", users)).run()
    assert outcome.reason == "max-images"
    assert len(done_records(tmp_path)) == 40


async def test_simulator_states_its_clock_and_plan_reads_it(sim_factory):
    async with sim_factory(images=50, seed=87) as sim:
        cfg = crawl_config("unused", sim.api_base)
        now = await partitions.server_now(cfg)
        newest = sim.catalogue.newest_ms / 1000
    assert abs(now.timestamp() - newest) < 1.5


def test_deep_proves_each_partition_of_a_plan_and_refuses_another_sort_saying_why(tmp_path):
    # 3000 images, cap 200: each base model's ~600 images are capped, each of its levels is not.
    with SimThread(SimConfig(images=3000, seed=83, depth_cap=200)) as sim:
        bases = Counter(i.get("baseModel") for i in sim.catalogue.items if i.get("baseModel"))
        values = [b for b, _n in bases.most_common(2)]
        plan, _parts = _plan(tmp_path, sim.api_base, "--by", "base-model", *[a for v in values for a in ("--value", v)])
        result = cli("crawl", "--out", str(tmp_path / "m"), "--plan", str(plan), "--deep",
                     *flags_list(sim.api_base, browsing_level=31, depth_cap=200), timeout=120)
        code, err = result.returncode, result.stderr
        expected: dict[int, str] = {}
        for value in values:
            expected.update(sim.catalogue.expected({**ALL, "baseModels": value}))
        sort = cli("crawl", "--out", str(tmp_path / "s"), "--deep", "--sort", "Most Reactions",
                   *flags_list(sim.api_base, browsing_level=31))
        assert code == EXIT_OK, err[-2000:]
        assert_complete(tmp_path / "m", expected)
        first = {r["id"] for r in done_records(tmp_path / "m")}
        # A rerun proves afresh (the finished proof reset the plan's own chains) and finds new uploads.
        sim.catalogue.add_new(60)
        again = cli("crawl", "--out", str(tmp_path / "m"), "--plan", str(plan), "--deep",
                    *flags_list(sim.api_base, browsing_level=31, depth_cap=200), timeout=120)
        after: dict[int, str] = {}
        for value in values:
            after.update(sim.catalogue.expected({**ALL, "baseModels": value}))
    assert again.returncode == EXIT_OK, again.stderr[-2000:]
    assert len(set(after) - set(expected)) > 0, "no new upload fell in the plan's base models: nothing tested"
    assert_complete(tmp_path / "m", after)
    assert {r["id"] for r in done_records(tmp_path / "m")} - first == set(after) - set(expected)
    assert "--deep proved the listing complete" in err.strip().splitlines()[-1], err[-500:]
    assert len(expected) > 800
    ids = [r["id"] for r in done_records(tmp_path / "m")]
    assert len(ids) == len(set(ids))
    status = orjson.loads(cli("status", "--out", str(tmp_path / "m"), "--json").stdout)
    assert status["gaps"] == [] and status["depth"]["splits"] >= 2
    assert {next(v for v in values if p.startswith(f"baseModels={v} ")) for p in status["depth"]["proven"]} == set(values)
    assert sort.returncode == 2 and "Newest and Oldest" in sort.stderr and "drop --sort" in sort.stderr
