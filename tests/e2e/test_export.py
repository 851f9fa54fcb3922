"""Export: the mirror read back as Parquet (pyarrow, pandas), JSON lines and webdataset shards."""

from __future__ import annotations

import asyncio
import hashlib
import json
import tarfile
from datetime import datetime

import pytest
from conftest import _NullLog, cli, crawl_config, done_records, run_crawl

from crawler import normalise
from crawler.export import dataset as export
from crawler.export.parquet import ParquetSink
from crawler.export.rows import done_records as export_done_records
from crawler.export.rows import row as export_row
from crawler.run.crawl import Crawl

ALL = {"browsingLevel": "31"}


def _check_row_against_item(row: dict, item: dict) -> None:
    meta = item.get("meta") or {}
    assert row["id"] == item["id"]
    assert row["username"] == item["username"] and row["base_model"] == item["baseModel"]
    assert row["post_id"] == item["postId"]
    assert row["model_version_ids"] == item["modelVersionIds"]
    assert row["nsfw_level"] == item["nsfwLevel"] and row["nsfw_level_raw"] == item["nsfwLevel"]
    assert datetime.fromisoformat(row["created_at"]) == datetime.fromisoformat(item["createdAt"])
    assert row["reactions"] == sum(item["stats"][k] for k in ("likeCount", "heartCount", "laughCount", "cryCount"))
    assert row["prompt"] == meta.get("prompt") and row["negative_prompt"] == meta.get("negativePrompt")
    assert row["seed"] == meta.get("seed") and row["steps"] == meta.get("steps")
    assert row["sampler"] == meta.get("sampler")
    assert row["cfg_scale"] == (float(meta["cfgScale"]) if "cfgScale" in meta else None)
    assert (json.loads(row["meta_json"]) if row["meta_json"] else None) == (item.get("meta") or None)


@pytest.fixture
async def mirror(sim_factory, tmp_path):
    async with sim_factory(images=160, seed=40, gone=0.05) as sim:
        await run_crawl(tmp_path / "m", sim.api_base, browsing_level=31)
        yield tmp_path / "m", {i["id"]: i for i in sim.catalogue.items}


async def test_parquet_reads_back_with_pyarrow_and_pandas_field_by_field(mirror, tmp_path):
    import pandas
    import pyarrow.parquet as pq
    root, items = mirror
    result = cli("export", "--out", str(root), "--format", "parquet", "--to", str(tmp_path / "d.parquet"))
    assert result.returncode == 0, result.stderr
    table = pq.read_table(tmp_path / "d.parquet")
    done = {r["id"]: r for r in done_records(root)}
    assert table.num_rows == len(done) > 100
    assert str(table.schema.field("seed").type) == "int64" and str(table.schema.field("cfg_scale").type) == "double"
    for row in table.to_pylist():
        _check_row_against_item(row, items[row["id"]])
        assert row["sha256"] == done[row["id"]]["sha256"] and row["path"] == done[row["id"]]["path"]
    frame = pandas.read_parquet(tmp_path / "d.parquet")
    assert len(frame) == len(done) and set(frame["id"]) == set(done)


async def test_parquet_is_written_in_row_groups(mirror, tmp_path):
    import pyarrow.parquet as pq
    root, _ = mirror
    sink = ParquetSink(tmp_path / "g.parquet", row_group=25)
    for record in export_done_records(root):
        sink.write(export.LocalImages(root), record, export_row(record))
    sink.close()
    meta = pq.ParquetFile(tmp_path / "g.parquet").metadata
    assert meta.num_row_groups == -(-meta.num_rows // 25) and meta.num_row_groups > 2


async def test_jsonl_has_one_line_per_done_image(mirror, tmp_path):
    root, items = mirror
    assert cli("export", "--out", str(root), "--format", "jsonl", "--to", str(tmp_path / "d.jsonl")).returncode == 0
    rows = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert len(rows) == len(done_records(root))
    for row in rows:
        _check_row_against_item(row, items[row["id"]])
        assert hashlib.sha256((root / row["path"]).read_bytes()).hexdigest() == row["sha256"]


async def test_webdataset_shards_read_back_with_tarfile(mirror, tmp_path):
    root, items = mirror
    out = tmp_path / "wds"
    assert cli("export", "--out", str(root), "--format", "webdataset", "--to", str(out), "--shard-size", "40").returncode == 0
    shards = sorted(out.glob("*.tar"))
    done = {str(r["id"]): r for r in done_records(root)}
    assert len(shards) == -(-len(done) // 40) and not list(out.glob("*.part"))
    seen = set()
    for shard in shards:
        with tarfile.open(shard) as tar:
            names = tar.getnames()
            for name in names:
                key, ext = name.rsplit(".", 1)
                data = tar.extractfile(name).read()
                if ext == "json":
                    _check_row_against_item(json.loads(data), items[int(key)])
                elif ext == "txt":
                    prompt = normalise.meta_fields(items[int(key)])["prompt"]
                    assert data.decode() == ("" if prompt is None else str(prompt).strip())
                else:
                    assert hashlib.sha256(data).hexdigest() == done[key]["sha256"]
                    assert ext in ("jpg", "png", "webp", "mp4")
                    seen.add(key)
    assert seen == set(done)


async def test_export_during_a_running_crawl_exports_only_complete_images(sim_factory, tmp_path):
    async with sim_factory(images=500, seed=41) as sim:
        crawl = Crawl(crawl_config(tmp_path / "m", sim.api_base, browsing_level=31, cdn_rps=150), log=_NullLog())
        task = asyncio.create_task(crawl.run())
        for _ in range(500):
            await asyncio.sleep(0.01)
            if crawl.stats.done >= 100:
                break
        done_before = crawl.stats.done
        result = await asyncio.to_thread(export.export, tmp_path / "m", "jsonl", tmp_path / "live.jsonl")
        assert not task.done(), "the crawl ended before the export ran: the test proves nothing"
        await task
    rows = [json.loads(line) for line in (tmp_path / "live.jsonl").read_text().splitlines()]
    final = {r["id"]: r for r in done_records(tmp_path / "m")}
    assert done_before <= result.rows == len(rows) < len(final)
    for row in rows:
        assert final[row["id"]]["sha256"] == row["sha256"]


def test_export_errors_are_one_line(tmp_path):
    result = cli("export", "--out", str(tmp_path), "--format", "jsonl", "--to", str(tmp_path / "x"))
    assert result.returncode == 2 and "not a mirror" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("item, rank", [
    ({"nsfwLevel": "None"}, 0), ({"nsfwLevel": "soft"}, 1), ({"nsfwLevel": "Mature"}, 2), ({"nsfwLevel": "X"}, 3),
    ({"nsfwLevel": 1}, 0), ({"nsfwLevel": 2}, 1), ({"nsfwLevel": 4}, 2), ({"nsfwLevel": 8}, 3), ({"nsfwLevel": 16}, 3),
    ({"nsfwLevel": 0}, 0), ({"nsfwLevel": "weird"}, None), ({}, None), ({"browsingLevel": 4}, 2),
    ({"nsfwLevel": True}, None),
])
def test_nsfw_level_string_and_number_forms_map_to_one_scale(item, rank):
    assert normalise.nsfw_rank(item) == rank
