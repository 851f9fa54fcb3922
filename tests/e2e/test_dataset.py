"""Dataset-builder controls: dry-run, filters, stop reasons, config show, captions export."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import cli, done_records, flags_list, run_crawl

from crawler import normalise
from crawler.simulator import SimConfig, SimThread

ALL = {"browsingLevel": "31"}


def test_dry_run_fetches_nothing_writes_only_its_count_and_predicts_the_crawl(tmp_path):
    out = tmp_path / "m"
    with SimThread(SimConfig(images=400, seed=50, gone=0.05)) as sim:
        # Part of it mirrored already, so "already mirrored" and the measured size estimate are exercised.
        assert cli("crawl", "--out", str(out), *flags_list(sim.api_base, browsing_level=31, max_images=50)).returncode == 0
        before = sorted(p.relative_to(out) for p in out.rglob("*"))
        manifest = (out / "manifest.jsonl").read_bytes()
        sim.log.clear()
        dry = cli("crawl", "--dry-run", "--out", str(out), *flags_list(sim.api_base, browsing_level=31, min_width=600))
        cdn_during_dry = sim.log.count(kind="cdn")
        api_during_dry = sim.log.count(kind="api")
        # Its one file is its count (for a later crawl's ETA): no image, no manifest record, no snapshot.
        assert sorted(p.relative_to(out) for p in out.rglob("*")) == sorted([*before, Path("dry-run-counts.json")])
        assert (out / "manifest.jsonl").read_bytes() == manifest
        [saved] = json.loads((out / "dry-run-counts.json").read_text()).values()
        real = cli("crawl", "--out", str(out), *flags_list(sim.api_base, browsing_level=31, min_width=600))
        assert real.returncode == 0, real.stderr
        fresh = cli("crawl", "--dry-run", "--out", str(tmp_path / "never"), *flags_list(sim.api_base, browsing_level=31))
    assert dry.returncode == 0, dry.stderr
    assert cdn_during_dry == 0 and api_during_dry > 0
    counts = {line.split(":")[0].strip(): line.split(":", 1)[1].strip() for line in dry.stdout.splitlines() if ":" in line}
    to_fetch = int(counts["to fetch"])
    last_run = [json.loads(l) for l in (out / "manifest.jsonl").read_text().splitlines() if '"event":"end"' in l][-1]
    c = last_run["counts"]
    assert to_fetch == c["done"] + c["failed"] + c["gone"] > 0
    assert int(counts["already mirrored"]) == c["skipped_done"]
    assert "measured over" in counts["estimated"] and f"{api_during_dry} API call" in dry.stdout
    assert "too-narrow" in counts["filtered out"]
    assert (saved["matched"], saved["already_mirrored"], saved["to_fetch"]) == (
        int(counts["matched"].split()[0]), int(counts["already mirrored"]), to_fetch)
    assert "assumed" in fresh.stdout and {p.name for p in (tmp_path / "never").iterdir()} == {"dry-run-counts.json"}
    # The real crawl's last lines and `status` say what was filtered out, by reason, in words.
    assert f"filtered out: too-narrow: {c['filtered']['too-narrow']}" in real.stderr
    assert " already mirrored" in real.stderr and " skipped " not in real.stderr
    status = cli("status", "--out", str(out)).stdout
    assert f"filtered out by the last run: too-narrow: {c['filtered']['too-narrow']}" in status


def _ids_where(sim, predicate):
    wanted = sim.catalogue.expected(ALL)
    return {i["id"] for i in sim.catalogue.items if i["id"] in wanted and predicate(i)}


def _median(values):
    values = sorted(values)
    return values[len(values) // 2]


@pytest.mark.parametrize("name", ["require_meta", "min_width", "min_height", "min_reactions", "max_nsfw_level",
                                  "exclude_user", "since", "until"])
async def test_each_filter_takes_exactly_the_items_on_its_side_of_the_threshold(sim_factory, tmp_path, name):
    async with sim_factory(images=300, seed=51) as sim:
        items = [i for i in sim.catalogue.items if i["id"] in sim.catalogue.expected(ALL)]
        if name == "require_meta":
            flag, keep = True, lambda i: bool(normalise.prompt(i))
        elif name == "min_width":
            flag = _median([i["width"] for i in items])
            keep = lambda i: i["width"] >= flag
        elif name == "min_height":
            flag = _median([i["height"] for i in items])
            keep = lambda i: i["height"] >= flag
        elif name == "min_reactions":
            flag = _median([normalise.reactions(i) for i in items])
            keep = lambda i: normalise.reactions(i) >= flag
        elif name == "max_nsfw_level":
            flag, keep = "Soft", lambda i: i["nsfwLevel"] in ("None", "Soft")
        elif name == "exclude_user":
            flag = [items[0]["username"], items[1]["username"]]
            keep = lambda i: i["username"] not in flag
        else:
            cut = _median([normalise.created_at(i) for i in items])
            flag = cut.isoformat()
            keep = (lambda i: normalise.created_at(i) >= cut) if name == "since" else (lambda i: normalise.created_at(i) < cut)
        wanted = {i["id"] for i in items if keep(i)}
        assert 0 < len(wanted) < len(items), "threshold does not split the catalogue: the test proves nothing"
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31, **{name: flag})
        cdn = sim.log.count(kind="cdn")
    got = {r["id"] for r in done_records(tmp_path)}
    assert got == wanted
    assert cdn == len(wanted)  # skipped items are never fetched
    assert sum(outcome.stats.filtered.values()) == len(items) - len(wanted)


async def test_since_with_newest_stops_paging_early(sim_factory, tmp_path):
    async with sim_factory(images=600, seed=52) as sim:
        items = sorted((i for i in sim.catalogue.items if i["id"] in sim.catalogue.expected(ALL)),
                       key=lambda i: i["createdAt"], reverse=True)
        since = normalise.created_at(items[60])
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31, sort="Newest", limit=20,
                                  since=since.isoformat())
        api_calls = sim.log.count(kind="api")
    assert outcome.reason == "since-reached" and "--since" in outcome.message
    assert {r["id"] for r in done_records(tmp_path)} == {i["id"] for i in items if normalise.created_at(i) >= since}
    assert api_calls <= 60 // 20 + 2, api_calls  # a full walk would take 30 pages


async def test_max_pages_stop_reason_and_resume_after_it(sim_factory, tmp_path):
    async with sim_factory(images=300, seed=53) as sim:
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31, limit=20, max_pages=3)
        assert outcome.reason == "max-pages" and outcome.exit_code == 0
        assert sim.log.count(kind="api") == 3
        again = await run_crawl(tmp_path, sim.api_base, browsing_level=31, limit=20)
    assert again.reason == "feed-ended" and again.stats.skipped_done == 0  # resumed after page 3


def test_every_stop_reason_is_printed_and_in_status_json(tmp_path):
    def last_line_and_status(out, sim, **flags):
        result = cli("crawl", "--out", str(out), *flags_list(sim.api_base, browsing_level=31, **flags))
        status = json.loads(cli("status", "--out", str(out), "--json").stdout)
        stop_lines = [l for l in result.stderr.splitlines() if " stopped: " in l]
        return result.returncode, stop_lines, status["last_run"]

    with SimThread(SimConfig(images=120, seed=54)) as sim:
        code, lines, run = last_line_and_status(tmp_path / "a", sim)
        assert code == 0 and "feed ended" in lines[-1] and run["reason"] == "feed-ended"
        code, lines, run = last_line_and_status(tmp_path / "b", sim, max_images=10)
        assert code == 0 and "--max-images 10" in lines[-1] and run["reason"] == "max-images"
        code, lines, run = last_line_and_status(tmp_path / "c", sim, max_pages=1, limit=10)
        assert code == 0 and "--max-pages 1" in lines[-1] and run["reason"] == "max-pages"
        assert run["params"]["browsingLevel"] == "31" and run["t"] > 0 and run["counts"]["done"] == 10


def test_config_show_names_each_source_and_hides_the_key(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("concurrency = 3\nmin_width = 512\n")
    result = cli("config", "show", "--config", str(config), "--api-rps", "0.5", "--json",
                 env={"CIVITAI_API_KEY": "hidden-key-value"})
    data = json.loads(result.stdout)
    assert result.returncode == 0 and "hidden-key-value" not in result.stdout
    assert data["concurrency"] == {"value": 3, "source": f"file {config}"}
    assert data["min_width"]["source"].startswith("file") and data["api_rps"] == {"value": 0.5, "source": "flag"}
    assert data["limit"] == {"value": 100, "source": "default"}
    assert data["api_key"] == {"value": "set", "source": "environment CIVITAI_API_KEY"}
    text = cli("config", "show").stdout
    assert "(default)" in text and re.search(r"^api_key\s+unset\s", text, re.M), text


async def test_captions_export_writes_one_text_per_image_and_hard_links(sim_factory, tmp_path):
    root = tmp_path / "m"
    async with sim_factory(images=150, seed=55) as sim:
        await run_crawl(root, sim.api_base, browsing_level=31, require_meta=True)
        items = {i["id"]: i for i in sim.catalogue.items}
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    result = cli("export", "--out", str(root), "--format", "captions", "--to", str(tmp_path / "train"))
    assert result.returncode == 0, result.stderr
    done = done_records(root)
    texts = sorted((tmp_path / "train").glob("*.txt"))
    assert len(texts) == len(done) > 50
    for record in done:
        text = (tmp_path / "train" / f"{record['id']}.txt").read_text()
        assert text.strip() == items[record["id"]]["meta"]["prompt"].strip()
        image = tmp_path / "train" / f"{record['id']}{os.path.splitext(record['path'])[1]}"
        assert os.path.samefile(image, root / record["path"])  # noqa: ASYNC240 - a hard link, not a copy
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == before  # mirror untouched
    assert "hard-linked" in result.stdout


async def test_dry_run_never_writes_a_resume_snapshot_into_the_mirror(sim_factory, tmp_path, monkeypatch):
    from conftest import crawl_config

    from crawler.run import dryrun
    from crawler.state import snapshot
    async with sim_factory(images=200, seed=56) as sim:
        await run_crawl(tmp_path, sim.api_base, browsing_level=31)
        (tmp_path / snapshot.NAME).unlink()  # as if the log had grown past the last snapshot
        monkeypatch.setattr(snapshot, "WORTH_SAVING", 10)  # a long log, in miniature
        report = await dryrun.dry_run(crawl_config(tmp_path, sim.api_base, browsing_level=31))
    assert report.already_done > 0
    assert not (tmp_path / snapshot.NAME).exists()
