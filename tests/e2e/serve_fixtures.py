"""A simulator-built mirror served by `serve` on 127.0.0.1, for the serve tests.

The crawl is real (simulator over sockets). Simulated files are only magic bytes, so the newest few
images are overwritten with real JPEGs made by Pillow: their thumbnails must come out as decoded
images; the rest get placeholders. One item's prompt is hostile HTML, to check escaping.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import run_crawl

from crawler.serve import command
from crawler.state.manifest import MANIFEST_NAME, iter_records
from crawler.state.records import key_of

HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
REAL_JPEGS = 4


@dataclass
class Served:
    url: str  # no trailing slash
    root: Path
    items: dict[int, dict[str, Any]]  # id -> the simulator's item
    hostile_key: str
    real_keys: list[str]  # images whose files are real JPEGs
    token: str

    def done(self) -> dict[str, dict[str, Any]]:
        """key -> last record, for every image whose last record is done (what the gallery shows)."""
        latest: dict[str, dict[str, Any]] = {}
        for record in iter_records(self.root / MANIFEST_NAME):
            if record["kind"] == "image":
                latest[str(key_of(record))] = record
        return {k: r for k, r in latest.items() if r["status"] == "done"}


def real_jpeg(width: int, height: int) -> bytes:
    from PIL import Image
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 90, 40)).save(out, "JPEG")
    return out.getvalue()


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


@pytest.fixture(name="served")
async def served_fixture(sim_factory, tmp_path) -> AsyncIterator[Served]:
    async with sim_factory(images=120, seed=40, gone=0.05) as sim:
        with_meta = [i for i in sim.catalogue.items if isinstance(i.get("meta"), dict)]
        with_meta[len(with_meta) // 2]["meta"]["prompt"] = HOSTILE
        hostile_id = with_meta[len(with_meta) // 2]["id"]
        await run_crawl(tmp_path / "m", sim.api_base, browsing_level=31)
        items = {i["id"]: i for i in sim.catalogue.items}
    root = tmp_path / "m"
    runner, url = await command.start(root, root, "127.0.0.1", 0)
    try:
        url = url.rstrip("/")
        newest = (await get_json(f"{url}/api/images?limit={REAL_JPEGS}&type=image"))["items"]
        for item in newest:
            fields = item["fields"]
            (root / fields["path"]).write_bytes(real_jpeg(fields["width"] or 640, fields["height"] or 480))
        async with aiohttp.ClientSession() as session, session.get(f"{url}/") as response:
            token = re.search(r'name="csrf-token" content="([^"]+)"', await response.text()).group(1)  # type: ignore[union-attr]
        yield Served(url, root, items, str(hostile_id), [i["key"] for i in newest], token)
    finally:
        await runner.cleanup()
