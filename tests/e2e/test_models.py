"""Model images: the three model endpoints, images without an id, one file per image across sources."""

from __future__ import annotations

import collections
import json

import pytest
from conftest import assert_complete, cli, done_records, run_crawl

ALL = {"browsingLevel": "31"}


def model_flags(**flags):
    return {"source": "models", "limit": 20, **flags}


async def test_models_list_with_every_level_mirrors_every_model_image(sim_factory, tmp_path):
    async with sim_factory(images=400, seed=80) as sim:
        outcome = await run_crawl(tmp_path, sim.api_base, **model_flags(nsfw="true", limit=5))
        expected = sim.catalogue.expected_models("models", params={"nsfw": "true"})
        api = sim.log.entries("api")
    assert outcome.reason == "feed-ended", outcome.message
    assert len({e.query.get("cursor") for e in api}) > 1, "the model list was not paged"
    assert_complete(tmp_path, expected)


async def test_models_list_without_nsfw_keeps_pg_images_only(sim_factory, tmp_path):
    async with sim_factory(images=300, seed=81) as sim:
        await run_crawl(tmp_path, sim.api_base, **model_flags())
        expected = sim.catalogue.expected_models("models", params={})
        every = sim.catalogue.expected_models("models", params={"nsfw": "true"})
    assert 0 < len(expected) < len(every)
    assert_complete(tmp_path, expected)
    assert all(r["item"]["nsfwLevel"] == 1 for r in done_records(tmp_path))


async def test_one_model_and_one_version_with_images_that_have_no_id(sim_factory, tmp_path):
    async with sim_factory(images=400, seed=82) as sim:
        model = max(sim.catalogue.models, key=lambda m: sum(len(v.images) for v in m.versions))
        version = max(model.versions, key=lambda v: len(v.images))
        await run_crawl(tmp_path / "model", sim.api_base, **model_flags(model_id=model.id))
        await run_crawl(tmp_path / "version", sim.api_base, **model_flags(model_version_id=version.id))
        expected_model = sim.catalogue.expected_models("model", model.id)
        expected_version = sim.catalogue.expected_models("model-version", version.id)
    assert_complete(tmp_path / "model", expected_model)
    assert_complete(tmp_path / "version", expected_version)
    uuid_keyed = [k for k in expected_model if isinstance(k, str)]
    assert uuid_keyed, "no image keyed by uuid: the missing-id case is not exercised"
    records = {(r["id"] if r["id"] is not None else r["uuid"]): r for r in done_records(tmp_path / "model")}
    for key in uuid_keyed:
        assert records[key]["id"] is None and records[key]["path"].startswith("images/u/")
    # Detail answers carry no id; the ids come from the URL's file name where it has one.
    assert all(r["item"].get("id") is None for r in records.values())
    assert any(isinstance(k, int) for k in records)
    # The model version answer carries generation metadata for images that have it.
    assert any(r["item"].get("meta") for r in done_records(tmp_path / "version"))
    # Status, verify and export work with uuid keys.
    assert cli("verify", "--out", str(tmp_path / "model")).returncode == 0
    out = tmp_path / "m.jsonl"
    assert cli("export", "--out", str(tmp_path / "model"), "--format", "jsonl", "--to", str(out)).returncode == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {row["key"] for row in rows} == {str(k) for k in expected_model}
    assert all(row["model_id"] == model.id for row in rows)


async def test_an_image_reached_from_the_feed_and_from_models_is_stored_once(sim_factory, tmp_path):
    async with sim_factory(images=300, seed=83) as sim:
        await run_crawl(tmp_path, sim.api_base, browsing_level=31)
        feed = sim.catalogue.expected(ALL)
        sim.log.clear()
        await run_crawl(tmp_path, sim.api_base, **model_flags(nsfw="true"))
        models = sim.catalogue.expected_models("models", params={"nsfw": "true"})
        model_cdn = [e.path for e in sim.log.entries("cdn")]
        shared = set(models) & set(feed)
        # The detail answers of every model list their images without ids (some only by uuid).
        sim.log.clear()
        for model in sim.catalogue.models[:6]:
            await run_crawl(tmp_path, sim.api_base, **model_flags(model_id=model.id))
        detail_cdn = sim.log.count(kind="cdn")
    assert shared, "no image is both in the feed and in a model: the test proves nothing"
    assert len(model_cdn) == len(set(models) - set(feed))  # images already mirrored from the feed: not fetched
    assert detail_cdn == 0  # the same images again, without ids: recognised by uuid, not fetched
    assert_complete(tmp_path, {**models, **feed})  # a shared image keeps the file the feed listed first
    keys = [r["id"] for r in done_records(tmp_path)]
    assert len(keys) == len(set(keys))


async def test_the_manifest_knows_every_model_version_that_referenced_an_image(sim_factory, tmp_path):
    async with sim_factory(images=400, seed=84) as sim:
        await run_crawl(tmp_path, sim.api_base, **model_flags(nsfw="true"))
        referenced = collections.defaultdict(set)
        for model in sim.catalogue.models:
            for version in model.versions:
                for image in version.images[:20]:
                    referenced[image.record.item["id"]].add(f"model:{model.id}/version:{version.id}")
        expected = sim.catalogue.expected_models("models", params={"nsfw": "true"})
    out = tmp_path / "d.jsonl"
    assert cli("export", "--out", str(tmp_path), "--format", "jsonl", "--to", str(out)).returncode == 0
    rows = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    multi = [i for i in rows if len(rows[i]["sources"]) > 1]
    assert multi, "no image under two model versions: the test proves nothing"
    for image_id, row in rows.items():
        assert set(row["sources"]) <= referenced[image_id] and row["sources"]
    assert len(rows) == len(expected)


@pytest.mark.parametrize("kind", ["video", "image"])
async def test_type_filter_and_video_extensions_from_content_type(sim_factory, tmp_path, kind):
    async with sim_factory(images=300, seed=85) as sim:
        await run_crawl(tmp_path, sim.api_base, browsing_level=31, type=kind, original=True)
        expected = sim.catalogue.expected({**ALL, "type": kind}, original=True)
        types = {i["id"]: i["type"] for i in sim.catalogue.items}
    assert_complete(tmp_path, expected)
    done = done_records(tmp_path)
    assert done and all(types[r["id"]] == kind for r in done)
    for r in done:
        assert r["path"].endswith(".mp4") == (kind == "video"), r["path"]
        assert r["content_type"].startswith(f"{kind}/")


def test_a_dry_run_of_models_pages_the_models_endpoint(tmp_path):
    """`crawl --dry-run --source models` asks /models, as the crawl does (it once paged /images), and
    counts the calls it made."""
    from conftest import flags_list

    from crawler.simulator import SimConfig, SimThread
    with SimThread(SimConfig(images=300, seed=84)) as sim:
        result = cli("crawl", "--dry-run", "--out", str(tmp_path / "never"),
                     *flags_list(sim.api_base, **model_flags(nsfw="true", limit=5)))
        paths = [e.path for e in sim.log.entries("api")]
        expected = sim.catalogue.expected_models("models", params={"nsfw": "true"})
    assert result.returncode == 0, result.stderr
    assert paths and set(paths) == {"/api/v1/models"}, collections.Counter(paths)
    assert f"{len(paths)} API call(s)" in result.stdout, result.stdout
    assert f"to fetch:     {len(expected)}" in result.stdout, result.stdout
    assert not (tmp_path / "never" / "manifest.jsonl").exists() and not (tmp_path / "never" / "images").exists()
