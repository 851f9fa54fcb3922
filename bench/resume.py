"""Group `resume`: time from process start to the first new download over a generated manifest of
millions of done records, then again on a restart (which may use a resume snapshot).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import manifest_gen
from bench.common import CONCURRENCY, CRAWL_COMMON, PY, UNTHROTTLED, Report, fmt, fresh_dir, settle_disk
from bench.procs import Child, proc_status_kb
from crawler.simulator import SimConfig, SimThread


def start_once(sim: Any, folder: Path, log: Path) -> dict[str, Any]:
    """Start a crawl over `folder`, time its first image request at the simulator, then SIGINT it."""
    sim.log.clear()
    cmd = [PY, "-m", "crawler.cli.main", "crawl", "--out", str(folder), "--api-base", sim.api_base, *CRAWL_COMMON,
           "--concurrency", str(CONCURRENCY), *UNTHROTTLED]
    child = Child(cmd, log, timeout=600)
    first = rss = hwm = None
    while child.running():
        entries = sim.log.entries("cdn") if len(sim.log) else []
        if entries:
            first = entries[0].t
            rss, hwm = proc_status_kb(child.pid, "VmRSS"), proc_status_kb(child.pid, "VmHWM")
            break
        time.sleep(0.005)
    child.signal(signal.SIGINT)
    result = child.wait()
    out = {"rc": result.rc, "timed_out": result.timed_out, "peak_rss_mb": round(result.maxrss_mb, 1),
           "rss_at_first_download_mb": None if rss is None else round(rss / 1024, 1),
           "hwm_at_first_download_mb": None if hwm is None else round(hwm / 1024, 1),
           "startup_s": None if first is None else round(first - child.t0, 3), "wall_s": round(result.wall, 2)}
    if first is None:
        out["note"] = f"no image request seen (rc {result.rc}); {result.log_tail[-300:]!r}"
    return out


# The fold alone, in a process of its own: what a start without a snapshot spends reading the log.
_FOLD = ("import json, resource as r, sys, time; from pathlib import Path; from crawler.state import resume; "
         "t = time.perf_counter(); s = resume.load(Path(sys.argv[1]), 'q', snapshots=False); "
         "w = time.perf_counter() - t; me, kids = r.getrusage(r.RUSAGE_SELF), r.getrusage(r.RUSAGE_CHILDREN); "
         "print(json.dumps({'records': s.records, 'wall_s': w, 'cpu_s': me.ru_utime + me.ru_stime + kids.ru_utime "
         "+ kids.ru_stime, 'peak_rss_mb': me.ru_maxrss / 1024, 'child_peak_rss_mb': kids.ru_maxrss / 1024}))")


def fold_once(manifest: Path) -> dict[str, Any]:
    """`resume.load` of the manifest without its snapshot, timed inside a fresh process."""
    done = subprocess.run([PY, "-c", _FOLD, str(manifest)], capture_output=True, text=True, timeout=900)
    if done.returncode:
        return {"note": done.stderr[-300:]}
    out: dict[str, Any] = json.loads(done.stdout)
    out["records_per_s"] = round(out["records"] / out["wall_s"])
    return out


def resume(args: argparse.Namespace, report: Report, work: Path) -> dict[str, Any]:
    sizes = [0, 1_000_000] + ([] if args.quick else [10_000_000])
    report.print("\n6. Resume start-up: manifest of N done records (ids not in the catalogue), time from process start "
                 "to the first image request at the simulator, page cache warm; 'first' = the generated manifest alone, "
                 "'second' = a restart after the first exits (a resume snapshot, if the crawler saves one, is used)")
    logs = work / "logs"
    rows: list[dict[str, Any]] = []
    with SimThread(SimConfig(images=2_000, body_bytes=4096)) as sim:
        for n in sizes:
            folder = fresh_dir(work / "resume")
            manifest = folder / "manifest.jsonl"
            row: dict[str, Any] = {"records": n}
            rows.append(row)
            if n:
                need = n * 360 + (1 << 30)
                if shutil.disk_usage(folder).free < need:
                    row["skipped"] = f"needs ~{need >> 30} GiB free on {folder}"
                    continue
                prev = rows[-2]
                if prev["records"] and prev.get("first", {}).get("startup_s") and rows[0].get("first", {}).get("startup_s"):
                    projected = (prev["first"]["startup_s"] - rows[0]["first"]["startup_s"]) * n / prev["records"]
                    if projected > 300:
                        row["skipped"] = f"projected start-up {projected:.0f}s from {prev['records']:,}: too long for the bench"
                        continue
                t = time.monotonic()
                size = manifest_gen.generate(str(manifest), n)
                row["generate_s"] = round(time.monotonic() - t, 2)
                row["manifest_mb"] = round(size / 1e6, 1)
                settle_disk()  # its dirty pages would otherwise be written back by the crawl's first fsync
            if n:
                row["fold"] = fold_once(manifest)  # before the first start, which saves a snapshot
            row["first"] = start_once(sim, folder, logs / f"resume-{n}-first.log")
            hidden = sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name not in (".lock", ".partial"))
            row["left_after_first"] = hidden
            row["second"] = start_once(sim, folder, logs / f"resume-{n}-second.log")
            shutil.rmtree(folder, ignore_errors=True)
    base = rows[0]
    report.print(f"   {'records':>11}{'manifest MB':>13}{'gen s':>7}{'start':>8}{'start-up s':>12}{'records/s':>12}"
                 f"{'RSS MB':>8}{'state MB':>10}{'HWM MB':>8}{'peak MB':>9}")
    for row in rows:
        if "skipped" in row:
            report.print(f"   {row['records']:>11,}  skipped: {row['skipped']}")
            continue
        for which in ("first", "second"):
            r, b = row[which], base[which]
            speed = state = None
            # Below 0.25 s the difference is within the noise of a start.
            if (row["records"] and r.get("startup_s") and b.get("startup_s") is not None
                    and r["startup_s"] - b["startup_s"] >= 0.25):
                    speed = row["records"] / (r["startup_s"] - b["startup_s"])
                    r["records_per_s"] = round(speed)
            if row["records"] and r.get("rss_at_first_download_mb") and b.get("rss_at_first_download_mb"):
                state = r["rss_at_first_download_mb"] - b["rss_at_first_download_mb"]
                r["state_rss_mb"] = round(state, 1)
            head = (f"{row['records']:>11,}{fmt(row.get('manifest_mb'), '.0f'):>13}{fmt(row.get('generate_s'), '.1f'):>7}"
                    if which == "first" else " " * 31)
            report.print(f"   {head}{which:>8}{fmt(r.get('startup_s'), '.2f'):>12}{fmt(speed):>12}"
                         f"{fmt(r.get('rss_at_first_download_mb'), '.0f'):>8}{fmt(state, '.0f'):>10}"
                         f"{fmt(r.get('hwm_at_first_download_mb'), '.0f'):>8}{r['peak_rss_mb']:9.0f}"
                         + (f"  {r['note']}" if r.get("note") else ""))
    report.print("   (records/s: N / (start-up with N - start-up with an empty manifest), '-' when that is under 0.25 s (noise); "
                 "projections to 10M are linear in N; state MB: RSS at the first "
                 "download minus the empty run's; HWM: peak RSS up to the first download; peak: over the whole run, "
                 "exit included)")
    if any(row.get("left_after_first") for row in rows):
        left = sorted({n for r in rows for n in r.get("left_after_first", [])})
        report.print(f"   files the first start left for the second: {left}")
    for row in rows:
        if row.get("fold", {}).get("note"):
            report.print(f"   the fold of {row['records']:,} records alone failed: {row['fold']['note']!r}")
    folds = [r for r in rows if r.get("fold", {}).get("records_per_s")]
    if folds:
        top = folds[-1]
        f = top["fold"]
        projected = f["wall_s"] * 10_000_000 / f["records"]
        v = report.target("fold of 10M records without a snapshot < 10 s, projected", round(projected, 1), "< 10 s",
                          projected < 10)
        report.print(f"   no snapshot, the fold alone (resume.load in a fresh process, {top['records']:,} records): "
                     f"{f['wall_s']:.2f}s, {f['records_per_s']:,} records/s, CPU {f['cpu_s']:.2f}s, peak RSS "
                     f"{f['peak_rss_mb']:.0f} MB (+{f['child_peak_rss_mb']:.0f} MB in its helper processes); "
                     f"10M projected {projected:.1f}s (target < 10 s)  {v}")
    for which, label in (("first", "manifest alone"), ("second", "restart")):
        measured = [r for r in rows if r["records"] and r.get(which, {}).get("startup_s") is not None]
        if not measured or base.get(which, {}).get("startup_s") is None:
            continue
        top = measured[-1]
        t = top[which]["startup_s"]
        name = f"resume start-up over 10M records < 10 s ({label})"
        if top["records"] == 10_000_000:
            v = report.target(name, t, "< 10 s", t < 10)
            report.print(f"   {label}: start-up over 10M records {t:.1f}s (target < 10 s)  {v}")
        else:
            projected = base[which]["startup_s"] + max(0.0, t - base[which]["startup_s"]) * 10_000_000 / top["records"]
            v = report.target(name + ", projected", round(projected, 1), "< 10 s", projected < 10)
            speed = top[which].get("records_per_s")
            report.print(f"   {label}{' (no snapshot)' if which == 'first' else ''}: start-up over 10M records "
                         f"projected from {top['records']:,}: {projected:.1f}s"
                         + (f" ({speed:,} records/s)" if speed else "") + f" (target < 10 s)  {v}")
    return {"rows": rows}
