"""Group `memory`: peak RSS of crawls of a small and a large number of tiny images (onto tmpfs when
there is room), and what the done-set costs per key.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

from bench.ceiling import crawl_check, measure
from bench.common import CONCURRENCY, UNTHROTTLED, Report, crawl_cmd, filesystem_of, fmt, fresh_dir, settle_disk
from bench.procs import SimProcess


def set_cost_per_key(n: int, first: int = 12_000_000) -> float:
    """Bytes per key of a set of n image-id ints, as the crawler's seen/done sets hold them."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keys = set(range(first, first + 7 * n, 7))
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del keys
    return (after - before) / n


def memory(args: argparse.Namespace, report: Report, work: Path) -> dict[str, Any]:
    sizes = (10_000, 50_000) if args.quick else (10_000, 200_000)
    place = memory_dir(args, work, sizes[1])
    report.print(f"\n5. Memory: peak RSS of the crawl (ru_maxrss) for {sizes[0]:,} vs {sizes[1]:,} images of ~256 B, "
                 f"concurrency {CONCURRENCY}, unthrottled, output on {filesystem_of(place)['type']} ({place})")
    if place != work:
        report.print("   (RSS does not depend on the disk; tmpfs spares minutes of file creation: --memory-on-disk to "
                     "use the output disk instead)")
    logs = work / "logs"
    rows = []
    try:
        rows = memory_runs(sizes, place, logs)
    finally:
        fs = filesystem_of(place)
        if place != work:
            shutil.rmtree(place, ignore_errors=True)
    small, big = rows
    growth = (big["peak_rss_mb"] - small["peak_rss_mb"]) * 1024 * 1024 / (big["images"] - small["images"])
    per_key = set_cost_per_key(big["images"])
    report.print(f"   {'images':>9}{'peak RSS MB':>13}{'RSS at 25% / 50% / 95% of the run':>36}{'img/s':>8}{'cpu s':>8}"
                 f"{'sim start s':>13}{'sim cpu s':>11}")
    for r in rows:
        at = " / ".join(fmt(r["rss_at"][k], ".1f") for k in ("25%", "50%", "95%"))
        report.print(f"   {r['images']:>9,}{r['peak_rss_mb']:13.1f}{at:>36}{r['rate']:8.0f}{r['cpu']:8.1f}"
                     f"{r['sim_startup_s']:13.1f}{r['sim_cpu']:11.1f}" + ("" if r["ok"] else f"  FAILED {r['note']}"))
    in_run = None
    if big["rss_at"]["25%"] is not None and big["rss_at"]["95%"] is not None:
        in_run = (big["rss_at"]["95%"] - big["rss_at"]["25%"]) * 1024 * 1024 / (0.7 * big["images"])
    ok = big["peak_rss_mb"] < 150 if big["ok"] else None
    v = report.target(f"peak RSS < 150 MB at {big['images']:,} images", round(big["peak_rss_mb"], 1), "< 150 MB", ok)
    report.print(f"   peak growth {growth:.0f} B/image between the two runs; within the {big['images']:,} run, from 25% to 95% "
                 f"of its time: {fmt(in_run)} B/image (a set of image-id ints would cost ~{per_key:.0f} B/key)")
    if big["max_sampled_rss_mb"] and big["peak_rss_mb"] > big["max_sampled_rss_mb"] + 5:
        report.print(f"   the peak ({big['peak_rss_mb']:.0f} MB) is above every RSS sampled while crawling "
                     f"({big['max_sampled_rss_mb']:.0f} MB, every 0.25 s): it is reached at start-up or exit")
    report.print(f"   peak RSS at {big['images']:,}: {big['peak_rss_mb']:.1f} MB (target < 150 MB at 200,000)  {v}"
                 + ("  (quick mode: measured at 50,000)" if args.quick else ""))
    report.print("   (the simulator builds its catalogue at start, ~70 us/item: 'sim start s'; it is not in the crawl's time)")
    return {"rows": rows, "growth_bytes_per_image": growth, "in_run_growth_bytes_per_image": in_run,
            "set_bytes_per_key": per_key, "output_filesystem": fs}


def memory_runs(sizes: tuple[int, int], place: Path, logs: Path) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        with SimProcess(["--images", str(n), "--body-bytes", "256"], logs / f"sim-mem-{n}.log",
                        start_timeout=60 + n * 0.001) as sim:
            out = fresh_dir(place / "out")
            one = measure(f"mem{n}", 0, crawl_cmd(out, sim.api_base, "--concurrency", str(CONCURRENCY), *UNTHROTTLED),
                          out, sim, n, logs, 60 + n * 0.005, crawl_check(n, None), sample_rss=True)
            samples = one.extra["rss_samples"]
            rows.append({"images": n, "peak_rss_mb": one.maxrss_mb, "rate": one.rate, "wall": one.wall, "cpu": one.cpu,
                         "sim_cpu": one.sim_cpu, "sim_startup_s": round(sim.startup_s, 2), "ok": one.ok,
                         "note": one.note[:300], "rss_at": {f"{int(100 * f)}%": rss_at(samples, one.wall * f)
                                                            for f in (0.25, 0.5, 0.95)},
                         "max_sampled_rss_mb": round(max((kb for _, kb in samples), default=0) / 1024, 1),
                         "rss_samples": samples[:: max(1, len(samples) // 40)]})
            shutil.rmtree(out, ignore_errors=True)
            settle_disk()
    return rows


def rss_at(samples: list[tuple[float, int]], t: float) -> float | None:
    """VmRSS in MB of the last sample taken at or before t seconds into the run."""
    before = [kb for at, kb in samples if at <= t]
    return round(before[-1] / 1024, 1) if before else None


def memory_dir(args: argparse.Namespace, work: Path, images: int) -> Path:
    """A folder on tmpfs (/dev/shm) when there is room and --memory-on-disk is not given, else the work folder."""
    shm = Path("/dev/shm")
    if args.memory_on_disk or not shm.is_dir() or not os.access(shm, os.W_OK):
        return work
    if filesystem_of(shm)["type"] != "tmpfs" or shutil.disk_usage(shm).free < images * 8192 + (1 << 30):
        return work
    return Path(tempfile.mkdtemp(prefix="civitai-bench-", dir=shm))
