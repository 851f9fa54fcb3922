"""Exports loaded by the libraries people train with: Hugging Face `datasets` and `webdataset`.

The simulator's bodies are not decodable pictures, so after the crawl each mirrored image file is
replaced by a real picture of its format (distinct pixels per image); videos stay as served.
"""

from __future__ import annotations

import hashlib
import io
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no Hub; never reach for it in tests

import orjson
import pytest
from conftest import run_crawl
from PIL import Image

from crawler import normalise
from crawler.export import dataset as export
from crawler.export.rows import done_records
from crawler.state import exclusions
from crawler.state.manifest import MANIFEST_NAME

FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


def _picture(seed: int, fmt: str) -> bytes:
    image = Image.new("RGB", (12, 8))
    image.putdata([((seed * 7 + i) % 256, (seed * 13) % 256, i * 3 % 256) for i in range(96)])
    out = io.BytesIO()
    image.save(out, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return out.getvalue()


@pytest.fixture
async def mirror(sim_factory, tmp_path):
    async with sim_factory(images=60, seed=43) as sim:
        await run_crawl(tmp_path / "m", sim.api_base, browsing_level=31)
        items = {i["id"]: i for i in sim.catalogue.items}
    root = tmp_path / "m"
    done = {r["id"]: r for r in done_records(root)}
    replaced: dict[int, bytes] = {}
    for record in done.values():
        fmt = FORMATS.get(str(record["content_type"]))
        if fmt is not None:
            replaced[record["id"]] = data = _picture(record["id"], fmt)
            (root / record["path"]).write_bytes(data)
    _vouch_for(root / MANIFEST_NAME, replaced)  # export ships only files that match their record
    done = {r["id"]: r for r in done_records(root)}
    pictures = {k: r for k, r in done.items() if r["content_type"] in FORMATS}
    assert len(pictures) > 30 and len(pictures) < len(done), "the test needs pictures and videos"
    return root, items, done, pictures


def _vouch_for(manifest, replaced: dict[int, bytes]) -> None:
    """Rewrite the done records of the replaced files with their new size and sha256 (test setup only)."""
    lines = []
    for line in manifest.read_bytes().splitlines():
        record = orjson.loads(line)
        if record.get("status") == "done" and record.get("id") in replaced:
            data = replaced[record["id"]]
            record.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        lines.append(orjson.dumps(record))
    manifest.write_bytes(b"\n".join(lines) + b"\n")


def _pixels(image: Image.Image) -> tuple:
    return image.size, image.convert("RGB").tobytes()


def _prompt(item: dict) -> str | None:
    prompt = normalise.meta_fields(item)["prompt"]
    return None if prompt is None else str(prompt)


async def test_hf_folder_loads_with_datasets_with_images_and_typed_columns(mirror, tmp_path):
    import datasets
    root, items, _done, pictures = mirror
    result = export.export(root, "hf", tmp_path / "ds")
    assert result.rows == len(pictures) and result.videos_left_out > 0
    from huggingface_hub import DatasetCard
    header = DatasetCard.load(tmp_path / "ds" / "README.md").data  # the YAML the Hub reads
    assert header.license == "other" and header.dataset_info["splits"] == [{"name": "train", "num_examples": len(pictures)}]
    assert header.dataset_info["features"][0] == {"name": "image", "dtype": "image"}
    ds = datasets.load_dataset(str(tmp_path / "ds"), split="train", cache_dir=str(tmp_path / "cache"))
    assert len(ds) == len(pictures)
    assert isinstance(ds.features["image"], datasets.Image)
    for name in ("id", "post_id", "like_count", "seed", "model_id"):
        assert ds.features[name] == datasets.Value("int64"), name
    assert ds.features["steps"] == datasets.Value("int32")
    assert ds.features["created_at"].dtype.startswith("timestamp")
    assert set(ds["id"]) == set(pictures)
    for row in ds:  # the Image feature decodes every row
        record = pictures[row["id"]]
        assert _pixels(row["image"]) == _pixels(Image.open(root / record["path"]))
        assert row["prompt"] == _prompt(items[row["id"]])
        assert isinstance(row["like_count"], int) or row["like_count"] is None
        assert row["created_at"].tzinfo is not None


async def test_hf_with_videos_has_a_path_column_and_no_image(mirror, tmp_path):
    import datasets
    root, _items, done, _pictures = mirror
    options = export.ExportOptions(include_videos=True)
    assert export.export(root, "hf", tmp_path / "ds", options=options).rows == len(done)
    ds = datasets.load_dataset(str(tmp_path / "ds"), split="train", cache_dir=str(tmp_path / "cache"))
    videos = ds.filter(lambda row: row["video_path"] is not None)
    assert 0 < len(videos) < len(ds)
    for row in videos:
        assert row["image"] is None and (root / row["video_path"]).is_file()
        assert done[row["id"]]["content_type"].startswith("video/")


async def test_parquet_with_embedded_images_loads_with_datasets(mirror, tmp_path):
    import datasets
    root, items, done, pictures = mirror
    target = tmp_path / "d.parquet"
    result = export.export(root, "parquet", target, options=export.ExportOptions(embed_images=True))
    assert result.rows == len(done)
    ds = datasets.load_dataset("parquet", data_files=str(target), split="train", cache_dir=str(tmp_path / "cache"))
    assert len(ds) == len(done) and isinstance(ds.features["image"], datasets.Image)
    assert ds.features["bytes"] == datasets.Value("int64")
    for row in ds:
        if row["id"] in pictures:
            assert _pixels(row["image"]) == _pixels(Image.open(root / pictures[row["id"]]["path"]))
            assert row["prompt"] == _prompt(items[row["id"]])
        else:
            assert row["image"] is None


async def test_webdataset_shards_iterate_with_webdataset_from_the_printed_pattern(mirror, tmp_path):
    import webdataset as wds
    root, items, done, pictures = mirror
    result = export.export(root, "webdataset", tmp_path / "wds", shard_size=7)
    assert result.pattern == str(tmp_path / "wds" / f"{{00000..{(len(done) - 1) // 7:05d}}}.tar")
    seen = set()
    for sample in wds.WebDataset(result.pattern, shardshuffle=False).decode("pil"):
        row = sample["json"]
        seen.add(row["id"])
        assert sample["txt"] == (_prompt(items[row["id"]]) or "").strip()
        if row["id"] in pictures:
            [ext] = [k for k in ("jpg", "png", "webp") if k in sample]
            assert _pixels(sample[ext]) == _pixels(Image.open(root / pictures[row["id"]]["path"]))
    assert seen == set(done)


async def test_excluded_images_are_left_out_of_the_hf_export(mirror, tmp_path):
    import pyarrow.parquet as pq
    root, _items, _done, pictures = mirror
    left_out = sorted(pictures)[:3]
    exclusions.add(root, [str(k) for k in left_out])
    result = export.export(root, "hf", tmp_path / "ds")
    assert result.excluded == 3 and result.rows == len(pictures) - 3
    ids = set(pq.read_table(tmp_path / "ds" / "data").column("id").to_pylist())
    assert ids == set(pictures) - set(left_out)


class _Interrupted(export.LocalImages):
    """The mirror's files, until the user presses Ctrl-C at the `after`th image."""

    def __init__(self, root, after: int) -> None:
        super().__init__(root)
        self.left = after

    def read(self, rel: str) -> bytes:
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt
        return super().read(rel)


async def test_an_interrupted_hf_export_leaves_only_complete_shards(mirror, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from crawler.export import hf
    root, _items, _done, _pictures = mirror
    monkeypatch.setattr(hf, "SHARD_BYTES", 2000)  # a few pictures per shard
    with pytest.raises(KeyboardInterrupt):
        export.export(root, "hf", tmp_path / "ds", images=_Interrupted(root, 20))
    files = sorted(os.listdir(tmp_path / "ds" / "data"))
    assert files and not [f for f in files if not f.endswith(".parquet")]
    assert not (tmp_path / "ds" / "README.md").exists()
    assert sum(pq.read_metadata(tmp_path / "ds" / "data" / f).num_rows for f in files) < 20
