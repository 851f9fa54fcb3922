"""Group `export`: peak memory of `export` (hf, parquet --embed-images, webdataset) over a generated
mirror of 100k done records (--quick: 10k), against 10k (--quick: 1k) rows of the same mirror.

Each export runs in its own child process (`crawler.export.dataset.export`, called by `python -c`);
its peak RSS is the child's ru_maxrss (os.wait4), and the child also reports its ru_maxrss once its
imports are done (pyarrow and the crawler: the fixed cost) and the seconds `export()` took (rows/s).
Target, per format: peak RSS < 400 MB at the large size, and <= 1.5x the small size's peak, i.e.
memory does not grow with the rows (issue 18: "a 100k-row export stays under a fixed memory bound");
the last line gives each format's ratio and its verdict. (Before row groups of 1000 rows, 100-row
groups' footer metadata grew hf and parquet --embed-images ~0.9 KB a row: 1.6x.)

The mirror holds a small real JPEG per record under images/ (1000 distinct ones made with Pillow), and
a manifest of done records in the crawler's shape whose `bytes` and `sha256` match the file (export
leaves out files whose size changed). The small mirror is the first records of the large one, its
images/ a symlink to the large one's. Data lives on tmpfs when there is room (`memory_dir`, as the
memory group). A failure (an export that fails or ships fewer rows) raises: run.py reports it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import PY, Report, fresh_dir
from bench.memory import memory_dir
from bench.procs import run
from crawler.state.manifest import MANIFEST_NAME

BOUND_MB = 400  # peak RSS of one export at the large size
GROWTH = 1.5  # large-size peak over small-size peak
FORMATS = (("hf", False), ("parquet", True), ("webdataset", False))  # (format, --embed-images)
_BASE_ID = 3_000_000_000
POOL = 1000  # distinct pictures, record k gets k % POOL: no two alike in a row group, so zstd cannot fold them
_VOCABULARY = ("masterpiece best quality portrait landscape city night neon rain castle dragon forest ocean sunset "
               "anime realistic watercolor cinematic soft light golden hour fog snow robot armor")
_WORDS = _VOCABULARY.split()
# The child: imports, then its ru_maxrss so far (KB), then the export, its time and counts as one JSON line.
_CHILD = """
import json, resource, sys, time
from pathlib import Path
from crawler.export.dataset import ExportOptions, export
imported_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
r = export(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), options=ExportOptions(embed_images=sys.argv[4] == "1"))
print(json.dumps({"rows": r.rows, "missing": r.skipped_missing, "changed": r.changed, "pattern": r.pattern,
                  "export_s": time.perf_counter() - t, "imported_kb": imported_kb}))
"""


def tiny_jpegs(count: int = POOL) -> list[bytes]:
    """`count` distinct 64x64 JPEGs of seeded noise (~3.7 KB each): real pictures every reader decodes."""
    from PIL import Image  # Pillow: in the test extras, not a crawler dependency
    rng = random.Random(18)
    pictures = []
    for _ in range(count):
        out = io.BytesIO()
        Image.frombytes("RGB", (64, 64), rng.randbytes(64 * 64 * 3)).save(out, "JPEG", quality=85)
        pictures.append(out.getvalue())
    return pictures


def write_mirror(root: Path, n: int, bodies: list[bytes]) -> None:
    """`n` done records in the crawler's `done` shape, each with its own file (record k: bodies[k % len])."""
    digests = [hashlib.sha256(body).hexdigest() for body in bodies]
    rng = random.Random(18)
    folders: set[Path] = set()
    with open(root / MANIFEST_NAME, "wb") as manifest:
        for k in range(n):
            ident = _BASE_ID + k
            rel = f"images/{k // 1000:04d}/{ident}.jpeg"
            folder = root / rel.rsplit("/", 1)[0]
            if folder not in folders:
                folder.mkdir(parents=True)
                folders.add(folder)
            body = bodies[k % len(bodies)]
            (root / rel).write_bytes(body)
            url = f"http://127.0.0.1:9/c/{ident}/width=64/{ident}.jpeg"
            item = {"id": ident, "url": url, "width": 64, "height": 64, "nsfwLevel": "None", "type": "image",
                    "username": f"user{k % 5000}", "baseModel": "SDXL 1.0", "postId": 9_000_000 + k // 4,
                    "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(1_700_000_000 + 30 * k)),
                    "stats": {"likeCount": k % 97, "heartCount": k % 13, "laughCount": 0, "cryCount": 0,
                              "commentCount": k % 5},
                    "meta": {"prompt": ", ".join(rng.sample(_WORDS, 12)), "negativePrompt": "lowres, blurry",
                             "seed": k, "steps": 30, "sampler": "Euler a", "cfgScale": 7}}
            manifest.write(orjson.dumps({"kind": "image", "id": ident, "uuid": None, "url": url, "status": "done",
                                         "path": rel, "sha256": digests[k % len(bodies)], "bytes": len(body), "width": 64,
                                         "content_type": "image/jpeg", "item": item, "t": 1_700_000_000.0 + k}))
            manifest.write(b"\n")


def small_mirror(root: Path, big: Path, n: int) -> None:
    """The first `n` records of the mirror at `big`, its images/ a symlink to big's."""
    with open(big / MANIFEST_NAME, "rb") as source, open(root / MANIFEST_NAME, "wb") as manifest:
        for _ in range(n):
            manifest.write(source.readline())
    (root / "images").symlink_to(big / "images", target_is_directory=True)


def one_export(root: Path, fmt: str, embed: bool, to: Path, n: int, logs: Path) -> dict[str, Any]:
    """Run one export in a child; its peak RSS, rows/s and output size. Raises when it fails or loses rows."""
    log = logs / f"export-{fmt}-{n}.log"
    done = run([PY, "-c", _CHILD, str(root), fmt, str(to), "1" if embed else "0"], log, 120 + n * 0.005)
    if done.rc != 0 or done.timed_out:
        raise RuntimeError(f"export {fmt} of {n:,} rows: rc {done.rc}{' (timed out)' if done.timed_out else ''}: "
                           f"{done.log_tail[-600:]}")
    out = json.loads(done.log_tail.strip().splitlines()[-1])
    if out["rows"] != n or out["missing"] or out["changed"]:
        raise RuntimeError(f"export {fmt}: {out['rows']} rows of {n} ({out['missing']} missing, {out['changed']} changed)")
    size = sum(p.stat().st_size for p in to.rglob("*") if p.is_file()) if to.is_dir() else to.stat().st_size
    if to.is_dir():
        shutil.rmtree(to)
    else:
        to.unlink()
    return {"rows": n, "peak_rss_mb": round(done.maxrss_mb, 1), "imported_rss_mb": round(out["imported_kb"] / 1024, 1),
            "export_s": round(out["export_s"], 2), "rows_per_s": round(n / out["export_s"]),
            "wall_s": round(done.wall, 2), "cpu_s": round(done.cpu, 2), "output_mb": round(size / 1e6, 1)}


def export_group(args: argparse.Namespace, report: Report, work: Path) -> dict[str, Any]:
    small, big = (1_000, 10_000) if args.quick else (10_000, 100_000)
    bodies = tiny_jpegs()
    mean = sum(map(len, bodies)) // len(bodies)
    place = memory_dir(args, work, big)
    where = "tmpfs" if place != work else "the work folder"
    report.print(f"\n9. Export: peak RSS (ru_maxrss of the child) of exports of {small:,} and {big:,} done records, "
                 f"each a JPEG file (64x64, {mean:,} B on average, {POOL} distinct), output on {where}; "
                 f"target: peak < {BOUND_MB} MB at {big:,} and <= {GROWTH}x the peak at {small:,}")
    results: dict[str, Any] = {"rows": [small, big], "image_bytes": mean, "bound_mb": BOUND_MB, "growth": GROWTH}
    try:
        mirrors = {big: fresh_dir(place / "export-big"), small: fresh_dir(place / "export-small")}
        t = time.monotonic()
        write_mirror(mirrors[big], big, bodies)
        small_mirror(mirrors[small], mirrors[big], small)
        results["generate_s"] = round(time.monotonic() - t, 1)
        report.print(f"   mirror generated in {results['generate_s']:.1f}s")
        report.print(f"   {'format':<26}{'rows':>9}{'peak RSS MB':>13}{'after imports':>15}{'rows/s':>9}"
                     f"{'export s':>10}{'output MB':>11}")
        ratios: list[str] = []
        for fmt, embed in FORMATS:
            name = f"{fmt}{' --embed-images' if embed else ''}"
            runs = []
            for n in (small, big):
                suffix = ".parquet" if fmt == "parquet" else ""
                r = one_export(mirrors[n], fmt, embed, place / f"out-{fmt}{suffix}", n, work / "logs")
                runs.append(r)
                report.print(f"   {name:<26}{n:>9,}{r['peak_rss_mb']:>13.1f}{r['imported_rss_mb']:>15.1f}"
                             f"{r['rows_per_s']:>9,}{r['export_s']:>10.1f}{r['output_mb']:>11.1f}")
            peak, ratio = runs[1]["peak_rss_mb"], runs[1]["peak_rss_mb"] / runs[0]["peak_rss_mb"]
            v1 = report.target(f"export {name}: peak RSS at {big:,} rows", peak, f"< {BOUND_MB} MB", peak < BOUND_MB)
            v2 = report.target(f"export {name}: peak {big:,} / {small:,} rows", round(ratio, 2), f"<= {GROWTH}x",
                               ratio <= GROWTH)
            report.print(f"   {name}: peak {peak:.0f} MB (< {BOUND_MB} MB: {v1}), {ratio:.2f}x the {small:,}-row peak "
                         f"(<= {GROWTH}x: {v2})")
            results[fmt] = {"runs": runs, "ratio": round(ratio, 2)}
            ratios.append(f"{name} {ratio:.2f}x {v2}")
        report.print(f"   peak RSS {small:,} -> {big:,} rows (<= {GROWTH}x): {', '.join(ratios)}")
    finally:
        shutil.rmtree(place / "export-small", ignore_errors=True)
        shutil.rmtree(place / "export-big", ignore_errors=True)
        if place != work:
            shutil.rmtree(place, ignore_errors=True)
    return results
