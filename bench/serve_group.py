"""Group `serve`: the `serve` web page over a generated mirror of 1M done records (--quick: 100k).

Measured: the search index's first build (records/s, `Index.refresh` in this process), then over HTTP
against `serve` on 127.0.0.1: the first gallery page, the first page of a search for a word in about a
third of the prompts, the gallery 100 pages deep (60 per page, by the page's own `after` cursor), and
the catch-up when 10k records are appended while it serves (the next page reads them first: records/s
is 10k over that page's time). Each page time is the median of a few requests after a first cold one.

Records are generated with prompts drawn from a fixed vocabulary (seeded), in the crawler's `done`
shape with the fields the index reads, each newer than the one before (so the newest appended record
leads the gallery); no image files exist (pages list them; thumbnails are not
requested). A failure raises, which run.py reports as this group's error.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.common import Report, fmt, fresh_dir
from crawler.serve import command
from crawler.serve.index import Index
from crawler.state.manifest import MANIFEST_NAME

COMMON_WORD = "portrait"  # in about a third of the prompts: a search with many matches, so the page fills
_VOCABULARY = (
    "masterpiece best quality detailed cinematic lighting landscape mountain river forest city night neon rain woman "
    "man girl boy cat dog dragon castle sky cloud sunset ocean beach flower garden armor sword robot space ship star "
    "galaxy anime realistic painting watercolor sketch oil photo studio soft bokeh dramatic moody vibrant pastel golden "
    "hour fog snow winter summer autumn spring smile red blue green purple black white silver gold ancient futuristic "
    "steampunk cyberpunk")
_WORDS = _VOCABULARY.split()
_NEGATIVE = "lowres, bad anatomy, bad hands, blurry, watermark, text, jpeg artifacts"
_MODELS = ("SD 1.5", "SDXL 1.0", "Pony", "Flux.1 D", "Illustrious")
_LEVELS = ("None", "Soft", "Mature", "X")
_BASE_ID = 2_000_000_000
_BLOCK = 10_000


def records(start: int, n: int, seed: int = 16) -> bytes:
    """`n` done image records, ids _BASE_ID+start onward, as manifest lines."""
    rng = random.Random(seed + start)
    lines = []
    for k in range(start, start + n):
        ident = _BASE_ID + k
        words = rng.sample(_WORDS, 12)
        if rng.random() < 0.33:
            words[rng.randrange(12)] = COMMON_WORD
        item = {"id": ident, "url": f"http://127.0.0.1:9/c/{ident}/x.jpeg", "width": 832, "height": 1216,
                "nsfwLevel": _LEVELS[k % 4], "type": "image", "username": f"user{k % 5000}",
                "baseModel": _MODELS[k % 5],
                "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(1_700_000_000 + 30 * k)),
                "stats": {"likeCount": k % 97, "heartCount": k % 13, "laughCount": 0, "cryCount": 0},
                "meta": {"prompt": ", ".join(words), "negativePrompt": _NEGATIVE, "seed": k, "steps": 30}}
        lines.append(orjson.dumps({"kind": "image", "id": ident, "uuid": None, "url": item["url"], "status": "done",
                                   "path": f"images/{ident % 1000:03d}/{ident}.jpeg", "sha256": "0" * 64,
                                   "bytes": 40_000, "width": 832, "content_type": "image/jpeg", "item": item,
                                   "t": 1_700_000_000.0 + k}))
    return b"\n".join(lines) + b"\n"


def write_manifest(path: Path, start: int, n: int) -> int:
    """Append records start .. start+n-1 in blocks; the bytes written."""
    size = 0
    with open(path, "ab") as f:
        for block in range(start, start + n, _BLOCK):
            data = records(block, min(_BLOCK, start + n - block))
            f.write(data)
            size += len(data)
    return size


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[float, str]:
    t = time.perf_counter()
    async with session.get(url) as response:
        text = await response.text()
        if response.status != 200:
            raise RuntimeError(f"GET {url}: {response.status} {text[:200]}")
    return (time.perf_counter() - t) * 1000, text


async def _timed(session: aiohttp.ClientSession, url: str, repeats: int = 5) -> dict[str, float]:
    """Cold (the first request) and the median of `repeats` more, in ms."""
    cold, _ = await _get(session, url)
    warm = [(await _get(session, url))[0] for _ in range(repeats)]
    return {"cold_ms": round(cold, 1), "median_ms": round(statistics.median(warm), 1)}


async def _pages(root: Path, n: int, appended: int) -> dict[str, Any]:
    runner, base = await command.start(root, root, "127.0.0.1", 0)
    base = base.rstrip("/")
    out: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as session:
            out["gallery_first"] = await _timed(session, f"{base}/")
            out["search_first"] = await _timed(session, f"{base}/?q={COMMON_WORD}")
            page = orjson.loads((await _get(session, f"{base}/api/images?limit=60"))[1])
            for _ in range(98):  # to the cursor of page 100
                page = orjson.loads((await _get(session, base + page["next"]))[1])
            deep = page["next"].replace("/api/images?", "/?", 1)
            out["gallery_page_100"] = await _timed(session, base + deep)
            matches = orjson.loads((await _get(session, f"{base}/api/images?limit=200&q={COMMON_WORD}"))[1])
            out["search_page_full"] = len(matches["items"]) == 200
            write_manifest(root / MANIFEST_NAME, n, appended)
            ms, text = await _get(session, f"{base}/")
            newest = str(_BASE_ID + n + appended - 1)
            if newest not in text:
                raise RuntimeError("the page after the catch-up does not show the newest appended record")
            out["catch_up"] = {"records": appended, "ms": round(ms, 1), "records_per_s": round(appended / (ms / 1000))}
    finally:
        await runner.cleanup()
    return out


def serve_group(args: argparse.Namespace, report: Report, work: Path) -> dict[str, Any]:
    n = 100_000 if args.quick else 1_000_000
    appended = 10_000
    report.print(f"\n8. Serve: the web page over a generated mirror of {n:,} done records (prompts of 12 words, "
                 f"'{COMMON_WORD}' in ~1/3); page times over HTTP on 127.0.0.1, cold = first request, then the median of 5")
    root = fresh_dir(work / "serve")
    results: dict[str, Any] = {"records": n}
    try:
        t = time.monotonic()
        size = write_manifest(root / MANIFEST_NAME, 0, n)
        results["generate_s"] = round(time.monotonic() - t, 1)
        results["manifest_mb"] = round(size / 1e6, 1)
        index = Index(root)
        t = time.monotonic()
        try:
            read = index.refresh()
        finally:
            index.close()
        build = time.monotonic() - t
        if read != n:
            raise RuntimeError(f"the index read {read} records of {n}")
        results["index_build"] = {"s": round(build, 1), "records_per_s": round(n / build)}
        results["index_mb"] = round(sum(p.stat().st_size for p in (root / "serve").iterdir()) / 1e6, 1)
        results.update(asyncio.run(_pages(root, n, appended)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    b, c = results["index_build"], results["catch_up"]
    report.print(f"   manifest {results['manifest_mb']:.0f} MB generated in {results['generate_s']:.1f}s; "
                 f"index {results['index_mb']:.0f} MB")
    report.print(f"   {'index first build':<36}{b['s']:>9.1f} s {b['records_per_s']:>12,} records/s")
    for name, label in (("gallery_first", "first gallery page"), ("search_first", f"search '{COMMON_WORD}', first page"),
                        ("gallery_page_100", "gallery page 100 (after= cursor)")):
        r = results[name]
        report.print(f"   {label:<36}{fmt(r['cold_ms'], '.1f'):>9} ms cold {fmt(r['median_ms'], '.1f'):>8} ms median")
    label = f"catch-up of {appended:,} appended"
    report.print(f"   {label:<36}{c['ms']:>9.1f} ms {c['records_per_s']:>12,} records/s "
                 f"(the next page reads them first)")
    # "Paged without slowing down at a million images" (issue 16): page 100 costs what page 1 costs.
    first, deep = results["gallery_first"]["median_ms"], results["gallery_page_100"]["median_ms"]
    verdict = report.target("serve: gallery page 100 vs page 1 (median)", round(deep / first, 2), "<= 2x", deep <= 2 * first)
    report.print(f"   page 100 / page 1: {deep / first:.2f}x (target <= 2x)  {verdict}")
    found = results["search_first"]["median_ms"]
    verdict = report.target("serve: common-word search, first page (median)", found, "< 1000 ms", found < 1000)
    report.print(f"   common-word search, first page {found:.0f} ms (target < 1 s)  {verdict}")
    return results
