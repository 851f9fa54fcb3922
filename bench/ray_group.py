"""Group `ray`: the same images with --executor local and with --executor ray on 1 and 2 actors,
interleaved; wall, images/s and CPU per image of driver + actors, the head's daemons apart.

The target is the whole command's CPU per image -- driver, actors and the Ray head's daemons (raylet,
gcs_server, ...) over the run -- within 1.15 x the local executor's, at 20,000 images so that Ray's
start-up is spread as a long crawl spreads it: the median over rounds of each round's ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from bench.ceiling import crawl_check
from bench.common import CEILING_BODY, CONCURRENCY, UNTHROTTLED, Report, crawl_cmd, fmt, fresh_dir, list_urls, retire, settle_disk
from bench.procs import LIVE, Child, SimProcess, kill_group, machine_cpu
from bench.ray_procs import (
    RAY_CPUS,
    RAY_WORKERS,
    WORKER_LINE,
    CpuSampler,
    RayHead,
    alive,
    foreign_sockets,
    ray_processes,
    series_at,
)


def ray_measure(name: str, round_no: int, cmd: list[str], out: Path, sim: SimProcess, expected: int, urls: set[str],
                logs: Path, workers: int, head: RayHead, sampler: CpuSampler, timeout: float) -> dict[str, Any]:
    """One crawl: wall, completeness, and the CPU of driver, actors and head daemons over it (see `ray_group`)."""
    settle_disk()
    sim.command("reset")
    sampler.sample(full=True)
    with sampler.lock:
        base = dict(sampler.last)
        sampler.series = []
    busy0, steal0 = machine_cpu()
    sim0 = sim.cpu()
    log = logs / f"{name.replace(' ', '')}-r{round_no}.log"
    child = Child(cmd, log, timeout, env=head.env)
    with sampler.lock:
        sampler.watch = {child.pid}
    actors: dict[int, str] = {}  # pid -> node
    foreign: list[str] | None = None
    while child.running():
        if workers and len(actors) < workers:
            text = log.read_bytes().decode("utf-8", "replace")
            actors = {int(m.group(2)): m.group(3) for m in WORKER_LINE.finditer(text)}
        if workers and len(actors) == workers and foreign is None:
            with sampler.lock:
                pids = set(sampler.members) | {child.pid}
            foreign = foreign_sockets(pids)
        child.done.wait(0.1)
    result = child.wait()
    if workers:  # the driver ends its actors on the way out; Ray's clean-up after the job counts as the daemons'
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in actors) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    sampler.sample(full=True)
    with sampler.lock:
        last, names, series = dict(sampler.last), dict(sampler.names), sampler.series or []
        sampler.series, sampler.watch = None, set()
    sim_cpu = sim.cpu() - sim0
    busy1, steal1 = machine_cpu()
    stats = sim.command("stats")
    cdn = stats["kinds"].get("cdn", 0)
    ok, note, files, size = crawl_check(expected, urls)(result, out)
    if workers and len(actors) != workers:
        ok, note = False, (f"{len(actors)}/{workers} 'download worker' lines; " + note).strip()
    if result.timed_out:
        ok, note = False, (note + " TIMED OUT").strip()

    def delta(pid: int) -> float:
        start = base.get(pid, 0.0)
        end = last.get(pid, start)
        return end - start if end >= start else end  # a reused pid: a new process

    actor_cpu = {pid: delta(pid) for pid in actors}
    daemon_by_name: dict[str, float] = {}
    for pid, pname in names.items():
        if pid not in actors:
            daemon_by_name[pname] = daemon_by_name.get(pname, 0.0) + delta(pid)
    daemons = sum(daemon_by_name.values())
    driver = result.cpu
    xfer = steady = steady_daemons = None
    phases: dict[str, Any] = {}
    first, end = stats.get("first_cdn"), stats.get("last_cdn")
    if first is not None and end is not None and end > first and cdn > 1:
        xfer = (cdn - 1) / (end - first)

        def work_at(t: float) -> float:
            return series_at(series, child.pid, t, 0.0) + sum(series_at(series, pid, t, base.get(pid, 0.0)) for pid in actors)

        def daemons_at(t: float) -> float:
            return sum(series_at(series, pid, t, base.get(pid, 0.0)) for pid in names if pid not in actors)

        def driver_at(t: float) -> float:
            return series_at(series, child.pid, t, 0.0)

        def actors_at(t: float) -> float:  # since the run began
            return sum(series_at(series, pid, t, base.get(pid, 0.0)) - base.get(pid, 0.0) for pid in actors)

        steady = 1000 * (work_at(end) - work_at(first)) / (cdn - 1)
        steady_daemons = 1000 * (daemons_at(end) - daemons_at(first)) / (cdn - 1)
        phases = {"start_s": first - child.t0, "transfer_s": end - first, "exit_s": child.t_end - end,
                  "driver_cpu": [driver_at(first), driver_at(end) - driver_at(first), driver - driver_at(end)],
                  "actors_cpu": [actors_at(first), actors_at(end) - actors_at(first),
                                 sum(actor_cpu.values()) - actors_at(end)]}
        phases = {k: round(v, 3) if isinstance(v, float) else [round(x, 3) for x in v] for k, v in phases.items()}
    images = expected if ok else files
    per = 1000 / max(1, images)
    return {
        "tool": name, "round": round_no, "workers": workers, "images": images, "ok": ok, "note": note[:600],
        "wall": result.wall, "rate": images / result.wall if result.wall else 0.0, "xfer_rate": xfer,
        "driver_cpu": driver, "driver_user": result.user, "driver_sys": result.sys, "driver_maxrss_mb": result.maxrss_mb,
        "actors_cpu": sum(actor_cpu.values()), "daemons_cpu": daemons, "work_cpu": driver + sum(actor_cpu.values()),
        "sim_cpu": sim_cpu, "other_cpu": max(0.0, (busy1 - busy0) - driver - sum(actor_cpu.values()) - daemons - sim_cpu),
        "steal": steal1 - steal0,
        "driver_ms_per_image": driver * per, "actors_ms_per_image": sum(actor_cpu.values()) * per,
        "work_ms_per_image": (driver + sum(actor_cpu.values())) * per, "daemons_ms_per_image": daemons * per,
        "steady_work_ms_per_image": steady, "steady_daemons_ms_per_image": steady_daemons,
        "phases": phases,  # CPU s [before the first image request, between first and last, after the last]
        "actors": [{"pid": pid, "node": node, "cpu_s": round(actor_cpu[pid], 3), "started_before_run": pid in base}
                   for pid, node in actors.items()],
        "daemons_by_process": {k: round(v, 3) for k, v in sorted(daemon_by_name.items(), key=lambda kv: -kv[1]) if v > 0},
        "foreign_sockets": foreign, "files": files, "bytes": size, "cdn_requests": cdn, "rc": result.rc,
    }


def ray_group(args: argparse.Namespace, report: Report, work: Path, flags: str) -> dict[str, Any]:
    """The same crawl with --executor local, and ray with 1 and 2 actors on a local Ray head, interleaved."""
    import importlib.util

    n_images = 5_000 if args.quick else 20_000
    rounds = 1 if args.quick else 2
    report.print(f"\n7. Ray executor: the same crawl of {n_images} images (~{CEILING_BODY // 1024} KB, --concurrency "
                 f"{CONCURRENCY}, unthrottled) with --executor local and --executor ray with " +
                 " and ".join(f"{w}" for w in RAY_WORKERS) + f" actor(s) on one local Ray head ({RAY_CPUS} CPUs) "
                 f"started for the group; {rounds} interleaved round(s)" + (", best of each by work CPU per image; "
                                                                           "ratios are medians of each round's"
                                                                           if rounds > 1 else ""))
    if "--executor" not in flags:
        report.print("   skipped: this crawler has no --executor")
        return {"skipped": "no --executor"}
    if importlib.util.find_spec("ray") is None:
        report.print("   skipped: Ray is not installed (pip install '.[ray]')")
        return {"skipped": "Ray not installed"}
    logs = work / "logs"
    head = RayHead(logs / "ray-head.log")
    sampler: CpuSampler | None = None
    runs: list[dict[str, Any]] = []
    try:
        sampler = CpuSampler(head.pid)
        daemons_at_start = dict(ray_processes(head.pid))
        head_foreign = foreign_sockets(set(daemons_at_start))
        report.print(f"   head pid {head.pid} at {head.address}, up in {head.startup_s:.1f}s: "
                     f"{', '.join(sorted(set(daemons_at_start.values())))}")
        if head_foreign:
            report.print(f"   WARNING: the Ray head uses non-loopback sockets: {head_foreign}")
        with SimProcess(["--images", str(n_images), "--body-bytes", str(CEILING_BODY), "--prewarm"],
                        logs / "sim-ray.log") as sim:
            urls = list_urls(sim.api_base)
            url_set = set(urls)
            n = len(urls)
            # The head's cost with nothing to do, for scale.
            sampler.sample(full=True)
            with sampler.lock:
                idle0 = sum(sampler.last.get(pid, 0.0) for pid in sampler.members)
            time.sleep(2.0)
            sampler.sample(full=True)
            with sampler.lock:
                idle_rate = (sum(sampler.last.get(pid, 0.0) for pid in sampler.members) - idle0) / 2.0
            tools: list[tuple[str, int]] = [("local", 0)] + [(f"ray x{w}", w) for w in RAY_WORKERS]

            def command(out: Path, workers: int, *extra: str) -> list[str]:
                ray_flags = ["--executor", "ray", "--download-workers", str(workers), "--ray-address", head.address] \
                    if workers else ["--executor", "local"]
                return crawl_cmd(out, sim.api_base, "--concurrency", str(CONCURRENCY), *UNTHROTTLED, *ray_flags, *extra)

            # Warm-up (not measured): the code's page cache, Ray's worker pool, the simulator's sockets.
            out = fresh_dir(work / "out")
            warm = Child(command(out, max(RAY_WORKERS), "--max-images", "400"), logs / "ray-warmup.log", 300,
                         env=head.env).wait()
            retire(out)
            if warm.rc != 0:
                raise RuntimeError(f"the warm-up crawl with --executor ray failed (rc {warm.rc}): {warm.log_tail[-400:]!r}")
            for r in range(rounds):
                order = tools[r % len(tools):] + tools[:r % len(tools)]
                for name, workers in order:
                    out = fresh_dir(work / "out")
                    one = ray_measure(name, r, command(out, workers), out, sim, n, url_set, logs, workers, head,
                                      sampler, 300)
                    runs.append(one)
                    retire(out)
                    report.print(f"   round {r + 1}: {name:<7} {one['rate']:6.0f} img/s  wall {one['wall']:5.2f}s  "
                                 f"driver {one['driver_cpu']:5.2f}s  actors {one['actors_cpu']:5.2f}s  "
                                 f"daemons {one['daemons_cpu']:4.2f}s  sim {one['sim_cpu']:4.2f}s  "
                                 f"other {one['other_cpu']:4.2f}s" + ("" if one["ok"] else f"  FAILED: {one['note'][:300]}"))
                    if one["foreign_sockets"]:
                        report.print(f"   WARNING: non-loopback sockets during {name}: {one['foreign_sockets']}")
            sim_startup = sim.startup_s
    finally:
        if sampler is not None:
            sampler.stop()
        for pid in list(LIVE):  # interrupted: a driver still connected would hold up the head's drain on SIGTERM
            if pid != head.pid:
                kill_group(pid)
        head.stop()
    retire(work / "out")
    if head.leftovers:
        report.print(f"   WARNING: Ray processes left after `ray start` ended, killed: {head.leftovers}")

    best: dict[str, dict[str, Any]] = {}
    for name, _ in tools:
        mine = [x for x in runs if x["tool"] == name]
        good = [x for x in mine if x["ok"]]
        chosen = min(good or mine, key=lambda x: x["work_ms_per_image"] if x["ok"] else float("inf"))
        best[name] = {**chosen, "all_ok": bool(mine) and len(good) == len(mine)}

    report.print()
    report.print(f"   {'run':<8}{'img/s':>7}{'xfer/s':>8}{'wall s':>8} | CPU ms/image: {'driver':>7}{'actors':>8}"
                 f"{'work':>7}{'daemons':>9}{'steady':>8} |{'sim ms':>8}{'other':>7}  check")
    for name, _ in tools:
        m = best[name]
        report.print(f"   {name:<8}{m['rate']:7.0f}{fmt(m['xfer_rate']):>8}{m['wall']:8.2f} |{'':>14}"
                     f"{m['driver_ms_per_image']:7.2f}{m['actors_ms_per_image']:8.2f}{m['work_ms_per_image']:7.2f}"
                     f"{m['daemons_ms_per_image']:9.2f}{fmt(m['steady_work_ms_per_image'], '.2f'):>8} |"
                     f"{1000 * m['sim_cpu'] / max(1, m['images']):8.2f}{1000 * m['other_cpu'] / max(1, m['images']):7.2f}  "
                     + ("ok" if m["all_ok"] else f"FAILED: {m['note'][:200]}"))
    report.print("   (work = driver (with any children) + actor processes: the figure the target uses; daemons = the "
                 "Ray head's own processes (gcs_server, raylet, agents, idle workers) over the same run, not in 'work'; "
                 f"steady = work CPU between the first and last image request at the simulator, start-up and exit left "
                 f"out; img/s over the whole command, start-up included; head idle: {idle_rate:.3f} CPU s/s)")

    report.print("   where the work CPU goes (runs above): start = process start to the first image request at the "
                 "simulator, transfer = first to last image request, exit = after that")
    for name, _ in tools:
        ph, m = best[name]["phases"], best[name]
        if not ph:
            continue
        per = 1000 / max(1, m["cdn_requests"] - 1)
        actors = [f" + actors {x:.2f}s" if m["workers"] else "" for x in ph["actors_cpu"]]
        report.print(f"   {name:<8} start {ph['start_s']:5.2f}s: driver {ph['driver_cpu'][0]:.2f}s{actors[0]}   "
                     f"transfer {ph['transfer_s']:5.2f}s: driver {ph['driver_cpu'][1] * per:.2f}"
                     + (f" + actors {ph['actors_cpu'][1] * per:.2f}" if m["workers"] else "") + " ms/image   "
                     f"exit {ph['exit_s']:4.2f}s: driver {ph['driver_cpu'][2]:.2f}s{actors[2]}")
    local = best["local"] if best["local"]["all_ok"] else None
    ratios: dict[str, Any] = {}
    for name, _workers in tools[1:]:
        m = best[name]
        good = local is not None and m["all_ok"]
        cpu = m["work_ms_per_image"] / local["work_ms_per_image"] if good else None
        with_daemons = ((m["work_cpu"] + m["daemons_cpu"]) / m["images"]) / (local["work_cpu"] / local["images"]) \
            if good else None
        steady = m["steady_work_ms_per_image"] / local["steady_work_ms_per_image"] \
            if good and m["steady_work_ms_per_image"] and local["steady_work_ms_per_image"] else None
        rate = m["rate"] / local["rate"] if good else None
        xfer = m["xfer_rate"] / local["xfer_rate"] if good and m["xfer_rate"] and local["xfer_rate"] else None
        per_round, whole_per_round = [], []
        for r in range(rounds):  # the same round's runs: the machine's load is alike for both
            a = [x for x in runs if x["tool"] == name and x["round"] == r and x["ok"]]
            b = [x for x in runs if x["tool"] == "local" and x["round"] == r and x["ok"]]
            if a and b:
                per_round.append(round(a[0]["work_ms_per_image"] / b[0]["work_ms_per_image"], 3))
                whole_per_round.append(round(((a[0]["work_cpu"] + a[0]["daemons_cpu"]) / a[0]["images"])
                                             / (b[0]["work_cpu"] / b[0]["images"]), 3))
        whole = statistics.median(whole_per_round) if whole_per_round and good else None
        ratios[name] = {"cpu_per_image": cpu, "cpu_per_image_with_daemons": with_daemons, "steady_cpu_per_image": steady,
                        "throughput": rate, "xfer_throughput": xfer, "cpu_per_image_per_round": per_round,
                        "whole_cpu_per_image_per_round": whole_per_round, "whole_cpu_per_image": whole}
        v = report.target(f"{name} whole-command CPU/image <= 1.15 x local at {n} images", whole, "<= 1.15",
                          None if whole is None else whole <= 1.15)
        report.print(f"   {name}/local at {n} images: whole-command CPU per image (driver + actors + Ray daemons) "
                     f"{fmt(whole, '.3f')} (target <= 1.15)  {v}; per round {whole_per_round}; without the daemons "
                     f"{per_round}; best runs: {fmt(cpu, '.2f')}, steady {fmt(steady, '.2f')}; throughput "
                     f"{fmt(rate, '.2f')} (xfer {fmt(xfer, '.2f')})")
    foreign = sorted({x for run in runs for x in run["foreign_sockets"] or []} | set(head_foreign))
    checked = sum(run["foreign_sockets"] is not None for run in runs)
    report.print(f"   sockets of the Ray head, its workers and the drivers (at start, and in {checked} ray run(s) with the "
                 "actors up): " + (f"NOT all on loopback: {foreign}" if foreign else "all on loopback"))
    for name, _ in tools[1:]:
        top = list(best[name]["daemons_by_process"].items())[:6]
        if top:
            report.print(f"   daemons in the {name} run: " + ", ".join(f"{k} {v:.2f}s" for k, v in top))
    return {
        "images": n, "body_bytes": CEILING_BODY, "concurrency": CONCURRENCY, "rounds": rounds,
        "head": {"address": head.address, "cpus": RAY_CPUS, "startup_s": round(head.startup_s, 2),
                 "processes": sorted(set(daemons_at_start.values())), "idle_cpu_s_per_s": round(idle_rate, 4),
                 "foreign_sockets": head_foreign, "leftovers_killed": head.leftovers},
        "simulator_startup_s": round(sim_startup, 2),
        "best": best, "ratios": ratios, "runs": runs, "foreign_sockets": foreign, "socket_checks": checked,
    }
