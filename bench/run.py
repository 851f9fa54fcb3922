"""The bench's entry: parses the flags, runs the chosen groups in order (one failing group is
reported and does not hide the others), prints the targets and writes the results file.

SIGTERM is handled like Ctrl-C: every child process group is killed and the work folder removed.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.bytecodes import bytecodes
from bench.ceiling import ceiling
from bench.common import BENCH, Report, compile_bytecode, crawl_flags, ensure_aria2c, machine_info
from bench.export_group import export_group
from bench.instructions import instructions
from bench.latency import latency
from bench.memory import memory
from bench.procs import LIVE, kill_group
from bench.rate import rate
from bench.ray_group import ray_group
from bench.resume import resume
from bench.serve_group import serve_group
from bench.tls_group import large_group, tls_group

GROUPS = ("ceiling", "latency", "tls", "large", "rate", "memory", "resume", "ray", "serve", "export", "instructions", "bytecodes")


def _interrupt(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: clean up like Ctrl-C (children killed, temp folder removed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="civitai-mirror benchmark (see bench/bench.py)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes: ~3 minutes instead of 15-20")
    parser.add_argument("--workdir", type=Path, default=BENCH,
                        help="where the temporary folder for downloads and manifests is made (default: bench/)")
    parser.add_argument("--results", type=Path, default=BENCH / "results.json")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups of {', '.join(GROUPS)}")
    parser.add_argument("--memory-on-disk", action="store_true",
                        help="crawl the memory group onto the work folder's disk instead of tmpfs (slower)")
    parser.add_argument("--no-install", action="store_true", help="do not apt-get install aria2 when aria2c is missing")
    args = parser.parse_args(argv)
    only = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = set(only) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s) {', '.join(sorted(unknown))}")

    started = time.monotonic()
    args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".bench-", dir=args.workdir))
    (work / "logs").mkdir()
    report = Report()
    info = machine_info(work)
    report.print(f"civitai-mirror bench ({'quick' if args.quick else 'full'})  {info['date']}")
    load = " ".join(info["loadavg_at_start"])
    report.print(f"machine: {info['nproc']} CPUs ({info['cpu_model']}), Linux {info['kernel']}, load {load}; "
                 f"output on {info['filesystem']['type']} ({info['filesystem']['device']} at {info['filesystem']['mount']})")
    report.print(f"python {info['python']}, " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()) +
                 f"; crawler at {info['git']['commit']}" + (" + uncommitted changes" if info["git"]["crawler_dirty"] else "") +
                 f" ({compile_bytecode()})")
    aria = ensure_aria2c(not args.no_install, report) if "ceiling" in only or "latency" in only else {"path": None}
    if aria.get("path"):
        by_bench = " (installed by this bench with apt-get)" if aria["installed_by_bench"] else ""
        report.print(f"aria2c: {aria.get('version')}{by_bench}")
    report.data["machine"] = info
    report.data["aria2c"] = aria
    report.data["mode"] = "quick" if args.quick else "full"
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _interrupt)
    code = 0
    try:
        flags = crawl_flags()
        runners: dict[str, Callable[[], dict[str, Any]]] = {
            "ceiling": lambda: ceiling(args, report, work, aria.get("path"), flags),
            "latency": lambda: latency(args, report, work, aria.get("path")),
            "tls": lambda: tls_group(args, report, work),
            "large": lambda: large_group(args, report, work),
            "rate": lambda: rate(args, report, work),
            "memory": lambda: memory(args, report, work),
            "resume": lambda: resume(args, report, work),
            "ray": lambda: ray_group(args, report, work, flags),
            "serve": lambda: serve_group(args, report, work),
            "export": lambda: export_group(args, report, work),
            "instructions": lambda: instructions(args, report, work),
            "bytecodes": lambda: bytecodes(args, report, work),
        }
        for group in GROUPS:
            if group not in only:
                continue
            t = time.monotonic()
            try:
                report.data[group] = runners[group]()
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one broken group must not hide the others' numbers
                report.data[group] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
                report.print(f"   {group}: ERROR {type(exc).__name__}: {exc}")
                code = 1
            report.data.setdefault("group_seconds", {})[group] = round(time.monotonic() - t, 1)
        profile = report.data.get("ceiling", {}).get("profile")
        if profile and "top_tottime" in profile:
            report.print(f"\nProfile of one unthrottled crawl under cProfile ({profile['images']} images, "
                         f"{profile['wall_s']}s wall with profiling): top 15 by tottime")
            for r in profile["top_tottime"]:
                report.print(f"   {r['tottime']:8.3f}s {r['cumtime']:8.3f}s cum {r['ncalls']:>9}  {r['function']}")
            report.print("   top 15 by cumulative time")
            for r in profile["top_cumtime"]:
                report.print(f"   {r['cumtime']:8.3f}s cum {r['tottime']:8.3f}s self {r['ncalls']:>9}  {r['function']}")
        elif profile:
            report.print(f"\nProfile: {profile.get('error')}")
    except KeyboardInterrupt:
        report.print("\ninterrupted: partial results written")
        code = 130
    finally:
        for pid in list(LIVE):
            kill_group(pid)
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(work, ignore_errors=True)
        report.data["targets"] = report.targets
        report.data["elapsed_s"] = round(time.monotonic() - started, 1)
        report.data["self_cpu_s"] = round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 1)
        args.results.write_bytes(orjson.dumps(report.data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS,
                                              default=str))
    report.print("\nTargets")
    for t in report.targets:
        value = t["value"]
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        report.print(f"   {t['result']:<5} {t['target']:<48} {shown:>10}  ({t['goal']})")
    report.print(f"\nfinished in {report.data['elapsed_s']:.0f}s; results in {args.results}")
    return code
