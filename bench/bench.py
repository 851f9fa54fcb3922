"""The benchmark: how fast, how lean and how polite the crawler is next to its ceilings, on this machine.

    .venv/bin/python bench/bench.py [--quick] [--workdir DIR] [--results FILE] [--only GROUP,...]
    make bench                    # full: ~11-15 minutes on 2 cores (most of it the 200k crawl and the 10M resume)
    make bench-quick              # or make bench QUICK=1: smaller sizes, ~4 minutes

Groups (each prints its part of the table; everything also goes to bench/results.json):
  ceiling  the same 5,000 simulator URLs (~50 KB) at the same concurrency into a fresh folder:
           aria2c (defaults; and --auto-save-interval=0 --file-allocation=none), a bare aiohttp loop
           writing and discarding (bench/bare.py), and our full crawl (API pages, hashing, manifest,
           group commit), in interleaved rounds (full: 2, best of each; quick: 1); full mode also
           runs `--no-fsync` and one crawl under cProfile
  latency  the simulator adds 50 ms to every response; images/s at concurrency 8 / 32 / 128
  cpu      client user+sys CPU per 1,000 images (from the ceiling runs)
  rate     --cdn-rps 200 --api-rps 2: achieved rates at the simulator and the busiest 1 s window, from
           a CDN-bound and an API-bound crawl run side by side
  memory   peak RSS crawling 10k vs 200k (quick: 50k) tiny images (onto tmpfs when there is room)
  resume   time from start to the first new download over a generated manifest of 1M and 10M
           (quick: 1M) done records, then again on a restart (which may use a resume snapshot)
  ray      the same 5,000 (quick: 2,000) ~50 KB images with --executor local, and --executor ray with 1
           and 2 actors on one local Ray head (`ray start --head --block`, 2 CPUs, 127.0.0.1, started once
           for the group, its own token), interleaved (full: 2 rounds, best of each): wall, images/s and
           CPU per image of driver + actors (target: ray < 1.15 x local), the head's daemons apart; CPU
           split into start-up / transfer / exit; no Ray process outlives the group

The simulator runs in its own process (bench/simserve.py, bodies pre-generated) with its CPU time
measured per run, except for `rate` and `resume`, which need its request log with arrival times
and run it in this process (crawler.simulator.SimThread). Every child has a timeout. The bench
reports (PASS/MISS next to each target); it asserts nothing. Only 127.0.0.1 is contacted (apt-get
aside, when aria2c is missing and we are root; `ray` lists any socket of the Ray processes and
drivers that is not on loopback). Temporary data lives in bench/.bench-* (or --workdir),
/dev/shm/civitai-bench-* and /tmp/civitai-bench-ray-* (the Ray session), removed at the end; it
peaks at ~4 GB (the 10M manifest).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import pstats
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONCURRENCY = 16
CEILING_IMAGES = 5_000
CEILING_BODY = 50 * 1024
UNTHROTTLED = ["--cdn-rps", "100000", "--api-rps", "1000"]
CRAWL_COMMON = ["--browsing-level", "31", "--limit", "200", "--progress", "none"]


# -- processes -------------------------------------------------------------------------------------

def child_env() -> dict[str, str]:
    """The environment without proxy settings: every request of the bench goes to 127.0.0.1 directly."""
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


LIVE: set[int] = set()  # process groups we started and have not reaped


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class ChildResult:
    rc: int | None
    wall: float
    user: float
    sys: float
    maxrss_mb: float
    timed_out: bool
    log_tail: str

    @property
    def cpu(self) -> float:
        return self.user + self.sys


class Child:
    """A subprocess in its own process group, reaped with os.wait4 (rusage) by a thread, killed at `timeout`."""

    def __init__(self, cmd: list[str], log_path: Path, timeout: float, cwd: Path = ROOT,
                 env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.timed_out = False
        self.done = threading.Event()
        self.status = 0
        self.rusage: Any = None
        with open(log_path, "wb") as log:
            self.t0 = time.monotonic()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                         env=env or child_env(), start_new_session=True)
        self.pid = self.proc.pid
        LIVE.add(self.pid)
        self.t_end = self.t0
        self._timer = threading.Timer(timeout, self._expire)
        self._timer.daemon = True
        self._timer.start()
        self._reaper = threading.Thread(target=self._reap, daemon=True)
        self._reaper.start()

    def _expire(self) -> None:
        self.timed_out = True
        kill_group(self.pid)

    def _reap(self) -> None:
        _, status, usage = os.wait4(self.pid, 0)
        self.t_end = time.monotonic()
        self.status, self.rusage = status, usage
        self.proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait again
        LIVE.discard(self.pid)
        kill_group(self.pid)  # anything it left behind in its group
        self.done.set()

    def running(self) -> bool:
        return not self.done.is_set()

    def signal(self, sig: int) -> None:
        if self.running():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self) -> ChildResult:
        self.done.wait()
        self._timer.cancel()
        usage = self.rusage
        try:
            tail = self.log_path.read_bytes()[-2000:].decode("utf-8", "replace")
        except OSError:
            tail = ""
        return ChildResult(rc=self.proc.returncode, wall=self.t_end - self.t0, user=usage.ru_utime, sys=usage.ru_stime,
                           maxrss_mb=usage.ru_maxrss / 1024, timed_out=self.timed_out, log_tail=tail)


def run(cmd: list[str], log_path: Path, timeout: float) -> ChildResult:
    return Child(cmd, log_path, timeout).wait()


def proc_cpu(pid: int) -> float:
    """utime+stime of a live process, in seconds (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


class LineReader:
    """Lines from a pipe with a deadline (no blocking read past it)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no line in time")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise EOFError("pipe closed")
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()


class SimProcess:
    """bench/simserve.py in its own process: `api_base`, `cpu()`, `command("stats")`, `stop()`."""

    def __init__(self, args: list[str], log_path: Path, start_timeout: float = 120.0) -> None:
        self.log = open(log_path, "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen([PY, str(BENCH / "simserve.py"), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, cwd=ROOT, env=child_env(),
                                     start_new_session=True)
        LIVE.add(self.proc.pid)
        self.reader = LineReader(self.proc.stdout.fileno())
        try:
            hello = json.loads(self.reader.readline(start_timeout))
        except (TimeoutError, EOFError, ValueError) as exc:
            self.stop()
            raise RuntimeError(f"simulator did not start: {exc}; see {log_path}") from None
        self.startup_s = time.monotonic() - t0
        self.api_base: str = hello["api_base"]
        self.prewarmed: int = hello.get("prewarmed", 0)
        self.loop: str = hello.get("loop", "?")
        self.pid = self.proc.pid
        if urllib.parse.urlsplit(self.api_base).hostname != "127.0.0.1":
            self.stop()
            raise RuntimeError(f"simulator is not on 127.0.0.1: {self.api_base}")

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def command(self, text: str, timeout: float = 60.0) -> dict[str, Any]:
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()
        return json.loads(self.reader.readline(timeout))

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                kill_group(self.proc.pid)
                self.proc.wait(10)
        LIVE.discard(self.proc.pid)
        self.log.close()

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- small helpers ---------------------------------------------------------------------------------

def list_urls(api_base: str, limit_pages: int = 100_000) -> list[str]:
    """Every item URL of `/images?browsingLevel=31&limit=200`, following metadata.nextCursor."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    urls: list[str] = []
    cursor = None
    for _ in range(limit_pages):
        params = {"browsingLevel": "31", "limit": "200"}
        if cursor is not None:
            params["cursor"] = str(cursor)
        with opener.open(f"{api_base}/images?{urllib.parse.urlencode(params)}", timeout=60) as response:
            data = orjson.loads(response.read())
        urls += [item["url"] for item in data.get("items", []) if isinstance(item, dict) and item.get("url")]
        cursor = (data.get("metadata") or {}).get("nextCursor")
        if not cursor:
            break
    return urls


def tree_stats(root: Path, top_level: bool = True) -> tuple[int, int]:
    """(files, bytes) under root, without aria2c control files or hidden folders (the crawler's .partial).

    `top_level=False` leaves out files directly in root: a crawl keeps its manifest, lock and other
    bookkeeping there, and its images in sub-folders.
    """
    files = total = 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if not top_level and folder == str(root):
            continue
        for name in names:
            if name.endswith(".aria2"):
                continue
            files += 1
            total += os.lstat(os.path.join(folder, name)).st_size
    return files, total


def manifest_summary(path: Path) -> dict[str, Any]:
    done: set[str] = set()
    statuses: dict[str, int] = {}
    reason = None
    try:
        with open(path, "rb") as f:
            for line in f:
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if record.get("kind") == "image":
                    statuses[record.get("status")] = statuses.get(record.get("status"), 0) + 1
                    if record.get("status") == "done":
                        done.add(record.get("url"))
                elif record.get("kind") == "run" and record.get("event") == "end":
                    reason = record.get("reason")
    except FileNotFoundError:
        pass
    return {"done_urls": done, "statuses": statuses, "end_reason": reason}


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def settle_disk() -> None:
    """Write back dirty pages between runs so one run's writeback does not land on the next."""
    os.sync()


def crawl_cmd(out: Path, api_base: str, *extra: str, profile: Path | None = None) -> list[str]:
    head = [PY, "-m", "cProfile", "-o", str(profile), "-m", "crawler.cli.main"] if profile else [PY, "-m", "crawler.cli.main"]
    return [*head, "crawl", "--out", str(out), "--api-base", api_base, *CRAWL_COMMON, *extra]


def crawl_flags() -> str:
    return subprocess.run([PY, "-m", "crawler.cli.main", "crawl", "--help"], capture_output=True, text=True, cwd=ROOT,
                          env=child_env(), timeout=60).stdout


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def fmt(value: float | None, spec: str = ".0f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


class Report:
    """The table printed as it is built, and the JSON document."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.targets: list[dict[str, Any]] = []

    def print(self, text: str = "") -> None:
        print(text, flush=True)

    def target(self, name: str, value: Any, goal: str, ok: bool | None) -> str:
        self.targets.append({"target": name, "value": value, "goal": goal, "result": verdict(ok)})
        return verdict(ok)


# -- machine and tools -----------------------------------------------------------------------------

def filesystem_of(path: Path) -> dict[str, str]:
    real = os.path.realpath(path)
    best = ("", "?", "?")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, fstype = line.split()[:3]
            mount = mount.replace("\\040", " ")
            if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best[0]):
                best = (mount, fstype, device)
    except OSError:
        pass
    return {"mount": best[0], "type": best[1], "device": best[2]}


def machine_info(workdir: Path) -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in ("aiohttp", "orjson", "uvloop", "aiolimiter"):
        try:
            from importlib.metadata import version
            versions[name] = version(name)
        except Exception:
            versions[name] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                                timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "crawler"],
                                    capture_output=True, text=True, cwd=ROOT, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "?", False
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "workdir": str(workdir),
        "filesystem": filesystem_of(workdir),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "git": {"commit": commit, "crawler_dirty": dirty},
    }


def ensure_aria2c(allow_install: bool, report: Report) -> dict[str, Any]:
    found = shutil.which("aria2c")
    info: dict[str, Any] = {"path": found, "installed_by_bench": False, "note": None}
    if found is None and allow_install:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            info["note"] = "aria2c missing and apt-get unavailable (not root or no apt): aria2c rows skipped"
        else:
            report.print("aria2c is missing: installing it with apt-get (apt-get update; apt-get install -y aria2) ...")
            env = {**child_env(), "DEBIAN_FRONTEND": "noninteractive"}
            try:
                subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=300, check=True)
                subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "aria2"], env=env,
                               capture_output=True, timeout=300, check=True)
            except (subprocess.SubprocessError, OSError) as exc:
                info["note"] = f"apt-get could not install aria2 ({type(exc).__name__}): aria2c rows skipped"
            found = shutil.which("aria2c")
            if found:
                info.update(path=found, installed_by_bench=True, note="installed by this bench with apt-get")
    elif found is None:
        info["note"] = "aria2c missing (--no-install): aria2c rows skipped"
    if found:
        try:
            out = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30).stdout
            info["version"] = out.split("\n", 1)[0]
        except (subprocess.SubprocessError, OSError):
            info["version"] = "?"
    if info["note"]:
        report.print(f"aria2c: {info['note']}")
    return info


# -- 1. ceiling (and 3. CPU per image) ---------------------------------------------------------------

@dataclass
class Run:
    tool: str
    round: int
    images: int
    wall: float
    rate: float
    xfer_rate: float | None
    cpu: float
    user: float
    sys: float
    maxrss_mb: float
    sim_cpu: float
    other_cpu: float
    steal: float
    files: int
    bytes: int
    ok: bool
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def measure(name: str, round_no: int, cmd: list[str], out: Path | None, sim: SimProcess, expected: int, logs: Path,
            timeout: float, check: Callable[[ChildResult, Path | None], tuple[bool, str, int, int]],
            sample_rss: bool = False) -> Run:
    settle_disk()
    sim.command("reset")
    busy0, steal0 = machine_cpu()
    sim0 = sim.cpu()
    child = Child(cmd, logs / f"{name}-r{round_no}.log", timeout)
    samples: list[tuple[float, int]] = []  # (seconds since start, VmRSS kB), when asked for
    while sample_rss and child.running():
        kb = proc_status_kb(child.pid, "VmRSS")
        if kb:
            samples.append((round(time.monotonic() - child.t0, 2), kb))
        child.done.wait(0.25)
    result = child.wait()
    sim_cpu = sim.cpu() - sim0
    busy1, steal1 = machine_cpu()
    stats = sim.command("stats")
    cdn = stats["kinds"].get("cdn", 0)
    ok, note, files, size = check(result, out)
    if out is None:  # bodies discarded: the simulator's count is the check
        ok = result.rc == 0 and cdn == expected and stats["statuses"].get("cdn:200") == expected
        note = "" if ok else f"rc {result.rc}, {cdn}/{expected} image requests; {result.log_tail[-300:]!r}"
    xfer = None
    if stats.get("first_cdn") is not None and stats["last_cdn"] > stats["first_cdn"] and cdn > 1:
        xfer = (cdn - 1) / (stats["last_cdn"] - stats["first_cdn"])
    bad = {k: v for k, v in stats["statuses"].items() if not k.endswith(":200")}
    if bad:
        note = (note + f" non-200 answers {bad}").strip()
    if result.timed_out:
        ok, note = False, (note + " TIMED OUT").strip()
    images = expected if ok else files
    return Run(tool=name, round=round_no, images=images, wall=result.wall, rate=images / result.wall if result.wall else 0,
               xfer_rate=xfer, cpu=result.cpu, user=result.user, sys=result.sys, maxrss_mb=result.maxrss_mb,
               sim_cpu=sim_cpu, other_cpu=max(0.0, (busy1 - busy0) - result.cpu - sim_cpu), steal=steal1 - steal0,
               files=files, bytes=size, ok=ok, note=note, extra={"cdn_requests": cdn, "rc": result.rc, "rss_samples": samples})


def file_check(expected: int) -> Callable[[ChildResult, Path | None], tuple[bool, str, int, int]]:
    def check(result: ChildResult, out: Path | None) -> tuple[bool, str, int, int]:
        files, size = tree_stats(out) if out is not None else (expected, 0)
        ok = result.rc == 0 and files == expected
        note = "" if ok else f"rc {result.rc}, {files}/{expected} files; {result.log_tail[-300:]!r}"
        return ok, note, files, size
    return check


def crawl_check(expected: int, urls: set[str] | None) -> Callable[[ChildResult, Path | None], tuple[bool, str, int, int]]:
    def check(result: ChildResult, out: Path | None) -> tuple[bool, str, int, int]:
        assert out is not None
        files, size = tree_stats(out, top_level=False)
        summary = manifest_summary(out / "manifest.jsonl")
        done = summary["done_urls"]
        ok = result.rc == 0 and len(done) == expected and files == expected
        note = ""
        if urls is not None and done != urls:
            ok = False
            note = f"crawl's URLs differ from the listed ones ({len(done ^ urls)} differ); "
        if not ok:
            note += f"rc {result.rc}, {len(done)}/{expected} done, {files} files, statuses {summary['statuses']}, " \
                    f"end {summary['end_reason']}; {result.log_tail[-400:]!r}"
        return ok, note, files, size
    return check


def ceiling(args: argparse.Namespace, report: Report, work: Path, aria2c: str | None, flags: str) -> dict[str, Any]:
    rounds = 1 if args.quick else 2
    report.print(f"\n1. Ceiling: {CEILING_IMAGES} images of ~{CEILING_BODY // 1024} KB, concurrency {CONCURRENCY}, "
                 f"{rounds} interleaved round(s)" + (", best round of each (noise only ever slows a run down)"
                                                      if rounds > 1 else ""))
    logs = work / "logs"
    with SimProcess(["--images", str(CEILING_IMAGES), "--body-bytes", str(CEILING_BODY), "--prewarm"],
                    logs / "sim-ceiling.log") as sim:
        urls = list_urls(sim.api_base)
        url_set = set(urls)
        url_file = work / "urls.txt"
        url_file.write_text("\n".join(urls) + "\n")
        n = len(urls)
        report.print(f"   simulator pid {sim.pid} ({sim.loop}, {sim.prewarmed} bodies pre-generated), "
                     f"{n} URLs listed ({len(url_set)} distinct)")
        tools: list[tuple[str, Callable[[Path], list[str]], bool]] = []
        if aria2c:
            base = [aria2c, "-q", "-i", str(url_file), "-j", str(CONCURRENCY), "-x", "1"]
            tools.append(("aria2c defaults", lambda d: [*base, "-d", str(d)], False))
            tools.append(("aria2c tuned", lambda d: [*base, "-d", str(d), "--auto-save-interval=0",
                                                     "--file-allocation=none"], False))
        tools.append(("bare write", lambda d: [PY, str(BENCH / "bare.py"), str(url_file), str(d), str(CONCURRENCY)], False))
        tools.append(("bare discard", lambda d: [PY, str(BENCH / "bare.py"), str(url_file), "-", str(CONCURRENCY)], False))
        tools.append(("ours", lambda d: crawl_cmd(d, sim.api_base, "--concurrency", str(CONCURRENCY), *UNTHROTTLED), True))
        if "--no-fsync" in flags and not args.quick:
            tools.append(("ours --no-fsync", lambda d: crawl_cmd(d, sim.api_base, "--concurrency", str(CONCURRENCY),
                                                                 "--no-fsync", *UNTHROTTLED), True))
        # Warm-up (not measured): page cache of the code, the simulator's sockets and allocator.
        run([PY, str(BENCH / "bare.py"), str(url_file), "-", str(CONCURRENCY)], logs / "warmup.log", 300)
        runs: list[Run] = []
        for r in range(rounds):
            order = tools[r % len(tools):] + tools[:r % len(tools)]
            for name, make, is_crawl in order:
                out = fresh_dir(work / "out") if name != "bare discard" else None
                cmd = make(out) if out is not None else make(work)
                check = crawl_check(n, url_set) if is_crawl else file_check(n)
                one = measure(name, r, cmd, out, sim, n, logs, 600, check)
                runs.append(one)
                report.print(f"   round {r + 1}: {name:<16} {one.rate:7.0f} img/s  wall {one.wall:5.2f}s  "
                             f"cpu {one.cpu:5.2f}s  sim cpu {one.sim_cpu:5.2f}s  other {one.other_cpu:4.2f}s"
                             + ("" if one.ok else f"  FAILED: {one.note[:300]}"))
                if out is not None:
                    shutil.rmtree(out, ignore_errors=True)
        profile = None if args.quick else profile_crawl(work, sim, n, logs)
        sim_startup = sim.startup_s
    shutil.rmtree(work / "out", ignore_errors=True)

    per_tool: dict[str, dict[str, Any]] = {}
    for name, _, _ in tools:
        mine = [x for x in runs if x.tool == name]
        good = [x for x in mine if x.ok] or mine
        best = max(good, key=lambda x: x.rate)
        per_tool[name] = {"best": asdict(best), "rates": [round(x.rate, 1) for x in mine],
                          "ok": all(x.ok for x in mine)}

    def rate_of(name: str) -> float | None:
        return per_tool[name]["best"]["rate"] if name in per_tool and per_tool[name]["ok"] else None

    def ratio(a: str, b: str) -> float | None:
        ra, rb = rate_of(a), rate_of(b)
        return ra / rb if ra and rb else None

    def round_ratios(a: str, b: str) -> list[float]:
        out = []
        for r in range(rounds):
            xa = [x for x in runs if x.tool == a and x.round == r and x.ok]
            xb = [x for x in runs if x.tool == b and x.round == r and x.ok]
            if xa and xb:
                out.append(round(xa[0].rate / xb[0].rate, 3))
        return out

    report.print()
    report.print(f"   {'tool':<17}{'img/s':>7}{'xfer/s':>8}{'MB/s':>7}{'wall s':>8}{'cpu s':>7}{'ms/img':>7}"
                 f"{'RSS MB':>7}{'sim cpu':>9}{'sim %':>6}{'other':>7}  files/bytes")
    bytes_ref = None
    for name, _, _ in tools:
        m = per_tool[name]["best"]
        if name != "bare discard" and m["ok"]:
            bytes_ref = bytes_ref or m["bytes"]
        mb = m["bytes"] / m["wall"] / 1e6 if m["bytes"] else (m["images"] * CEILING_BODY / m["wall"] / 1e6)
        check = "ok" if m["ok"] else "FAILED"
        if m["ok"] and name != "bare discard" and bytes_ref and m["bytes"] != bytes_ref:
            check = f"bytes differ ({m['bytes']} vs {bytes_ref})"
        report.print(f"   {name:<17}{m['rate']:7.0f}{fmt(m['xfer_rate']):>8}{mb:7.1f}{m['wall']:8.2f}{m['cpu']:7.2f}"
                     f"{1000 * m['cpu'] / max(1, m['images']):7.2f}{m['maxrss_mb']:7.0f}{m['sim_cpu']:9.2f}"
                     f"{100 * m['sim_cpu'] / m['wall']:5.0f}%{m['other_cpu']:7.2f}  {m['files']}/{m['bytes']} {check}")
    report.print("   (img/s: images / wall time of the whole command, start-up included; xfer/s: between the first and "
                 "last image request at the simulator; sim %: simulator CPU / wall, ~100% = one core busy; other: CPU "
                 "seconds used by anything else on the machine meanwhile)")
    ours_bare = ratio("ours", "bare write")
    ours_aria = ratio("ours", "aria2c defaults")
    sim_busy = max(per_tool[n]["best"]["sim_cpu"] / per_tool[n]["best"]["wall"] for n in per_tool)
    result = {
        "images": n, "body_bytes": CEILING_BODY, "concurrency": CONCURRENCY, "rounds": rounds,
        "simulator": {"loop": sim.loop, "prewarmed": sim.prewarmed, "startup_s": round(sim_startup, 2),
                      "max_busy_fraction": round(sim_busy, 3)},
        "tools": per_tool,
        "ratios": {
            "ours/bare_write": ours_bare, "ours/aria2c_defaults": ours_aria,
            "ours/aria2c_tuned": ratio("ours", "aria2c tuned"), "ours/bare_discard": ratio("ours", "bare discard"),
            "ours_no_fsync/bare_write": ratio("ours --no-fsync", "bare write"),
            "per_round": {"ours/bare_write": round_ratios("ours", "bare write"),
                          "ours/aria2c_defaults": round_ratios("ours", "aria2c defaults")},
        },
        "runs": [asdict(x) for x in runs],
        "profile": profile,
    }
    v1 = report.target("ours >= 0.85 x bare write", ours_bare, ">= 0.85", None if ours_bare is None else ours_bare >= 0.85)
    v2 = report.target("ours >= 1.5 x aria2c defaults", ours_aria, ">= 1.5", None if ours_aria is None else ours_aria >= 1.5)
    report.print(f"   ours/bare write      {fmt(ours_bare, '.2f')}  (target >= 0.85)  {v1}   per round "
                 f"{result['ratios']['per_round']['ours/bare_write']}")
    report.print(f"   ours/aria2c defaults {fmt(ours_aria, '.2f')}  (target >= 1.5)   {v2}   per round "
                 f"{result['ratios']['per_round']['ours/aria2c_defaults']}")
    for label, key in (("ours/aria2c tuned   ", "ours/aria2c_tuned"), ("ours/bare discard   ", "ours/bare_discard"),
                       ("ours --no-fsync/bare", "ours_no_fsync/bare_write")):
        if result["ratios"][key] is not None:
            report.print(f"   {label} {result['ratios'][key]:.2f}")
    if sim_busy > 0.9:
        report.print(f"   note: the simulator was busy {100 * sim_busy:.0f}% of a core in some run: it may be the bottleneck")
    else:
        report.print(f"   simulator busiest at {100 * sim_busy:.0f}% of one core: not the bottleneck")

    # 3. CPU per image, from the same runs.
    report.print("\n3. Client CPU per 1,000 images (unthrottled ceiling runs, the run shown above)")
    cpu: dict[str, Any] = {}
    for name in per_tool:
        m = per_tool[name]["best"]
        if m["images"]:
            cpu[name] = {"user_s_per_1000": 1000 * m["user"] / m["images"], "sys_s_per_1000": 1000 * m["sys"] / m["images"],
                         "cpu_ms_per_image": 1000 * m["cpu"] / m["images"]}
            report.print(f"   {name:<17} user {cpu[name]['user_s_per_1000']:.2f}s + sys {cpu[name]['sys_s_per_1000']:.2f}s "
                         f"= {cpu[name]['cpu_ms_per_image']:.2f} ms/image")
    ours_ms = cpu.get("ours", {}).get("cpu_ms_per_image") if per_tool.get("ours", {}).get("ok") else None
    v3 = report.target("client CPU <= 1 ms per image", ours_ms, "<= 1.0 ms", None if ours_ms is None else ours_ms <= 1.0)
    report.print(f"   ours: {fmt(ours_ms, '.2f')} ms/image (target <= 1 ms)  {v3}  (whole process: start-up, API pages, "
                 "hashing, manifest, group commit)")
    result["cpu_per_image"] = cpu
    return result


def profile_crawl(work: Path, sim: SimProcess, n: int, logs: Path) -> dict[str, Any]:
    out = fresh_dir(work / "out")
    prof = work / "crawl.prof"
    settle_disk()
    result = run(crawl_cmd(out, sim.api_base, "--concurrency", str(CONCURRENCY), *UNTHROTTLED, profile=prof),
                 logs / "profile.log", 600)
    shutil.rmtree(out, ignore_errors=True)
    if result.rc != 0 or not prof.exists():
        return {"error": f"profiled crawl failed: rc {result.rc}; {result.log_tail[-300:]!r}"}
    stats = pstats.Stats(str(prof), stream=io.StringIO())
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{_short(filename)}:{line}({func})", "ncalls": nc, "tottime": tt, "cumtime": ct})
    top_tot = sorted(rows, key=lambda r: -r["tottime"])[:15]
    top_cum = sorted(rows, key=lambda r: -r["cumtime"])[:15]
    return {"images": n, "wall_s": round(result.wall, 2), "cpu_s": round(result.cpu, 2),
            "top_tottime": _round_rows(top_tot), "top_cumtime": _round_rows(top_cum)}


def _short(filename: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _round_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "tottime": round(r["tottime"], 3), "cumtime": round(r["cumtime"], 3)} for r in rows]


# -- 2. latency ------------------------------------------------------------------------------------

def latency(args: argparse.Namespace, report: Report, work: Path, aria2c: str | None) -> dict[str, Any]:
    latency_ms = 50
    total = 2_000 if args.quick else 4_000
    levels = (8, 32, 128)
    report.print(f"\n2. Latency: the simulator adds {latency_ms} ms to every response; {total}-image catalogue "
                 f"(~{CEILING_BODY // 1024} KB), at concurrency c the first " +
                 (f"min({total}, max(400, 25c))" if args.quick else f"min({total}, max(600, 40c))") + " URLs")
    logs = work / "logs"
    rows = []
    with SimProcess(["--images", str(total), "--body-bytes", str(CEILING_BODY), "--prewarm",
                     "--latency-ms", str(latency_ms)], logs / "sim-latency.log") as sim:
        urls = list_urls(sim.api_base)
        for c in levels:
            n = min(len(urls), max(400, 25 * c) if args.quick else max(600, 40 * c))
            url_file = work / f"urls-{c}.txt"
            url_file.write_text("\n".join(urls[:n]) + "\n")
            tools: list[tuple[str, Callable[[Path], list[str]], bool]] = [
                ("bare write", lambda d: [PY, str(BENCH / "bare.py"), str(url_file), str(d), str(c)], False),
                ("ours", lambda d: crawl_cmd(d, sim.api_base, "--concurrency", str(c), "--max-images", str(n),
                                             *UNTHROTTLED), True),
            ]
            if aria2c and not args.quick:
                tools.append(("aria2c tuned", lambda d: [aria2c, "-q", "-i", str(url_file), "-j", str(c), "-x", "1",
                                                         "-d", str(d), "--auto-save-interval=0",
                                                         "--file-allocation=none"], False))
            row: dict[str, Any] = {"concurrency": c, "images": n, "ideal_rate": c / (latency_ms / 1000)}
            for name, make, is_crawl in tools:
                out = fresh_dir(work / "out")
                check = crawl_check(n, set(urls[:n])) if is_crawl else file_check(n)
                one = measure(f"lat{c}-{name}", 0, make(out), out, sim, n, logs, 600, check)
                shutil.rmtree(out, ignore_errors=True)
                row[name] = {"rate": one.rate, "xfer_rate": one.xfer_rate, "wall": one.wall, "cpu": one.cpu,
                             "sim_cpu": one.sim_cpu, "ok": one.ok, "note": one.note[:300]}
            rows.append(row)
    names = ["bare write", "ours"] + (["aria2c tuned"] if aria2c and not args.quick else [])
    report.print(f"   {'c':>5}{'images':>8}{'ideal/s':>9}" + "".join(f"{n + ' img/s (xfer)':>27}" for n in names))
    for row in rows:
        cells = ""
        for name in names:
            cell = row[name]
            text = f"{cell['rate']:.0f} ({fmt(cell['xfer_rate'])})" + ("" if cell["ok"] else " FAILED")
            cells += f"{text:>27}"
        report.print(f"   {row['concurrency']:>5}{row['images']:>8}{row['ideal_rate']:>9.0f}{cells}")
    report.print("   (ideal = c / 50 ms; img/s over the whole command including start-up; xfer = between the first "
                 "and last image request at the simulator)")
    failed = [f"c={r['concurrency']} {n}: {r[n]['note']}" for r in rows for n in names if not r[n]["ok"]]
    for line in failed:
        report.print(f"   FAILED {line}")
    return {"latency_ms": latency_ms, "catalogue": total, "rows": rows}


# -- 4. rate accuracy ------------------------------------------------------------------------------

def window_stats(times: list[float], start: float, seconds: float) -> dict[str, Any]:
    times = sorted(times)
    inside = [t for t in times if start <= t < start + seconds]

    def busiest(ts: list[float]) -> int:
        best = lo = 0
        for hi, t in enumerate(ts):
            while t - ts[lo] >= 1.0:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    return {"achieved_rps": len(inside) / seconds, "max_1s_steady": busiest(inside), "max_1s_whole_run": busiest(times),
            "requests": len(times)}


MARK_WIDTH = 123  # the API-bound crawl asks for this width, so its image requests are told apart at the simulator


def rate_runs(sim: Any, work: Path, window: float, cdn_rps: int, api_rps: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two crawls at once against one simulator: one CDN-bound (--limit 200), one API-bound (--limit 20).

    Pages of 20 at 2 pages/s feed only 40 images/s, so there the API limit is what binds. Their API
    requests differ by `limit`, their image requests by the width the API-bound one asks for.
    """
    logs = work / "logs"
    common = ["--browsing-level", "31", "--progress", "none", "--concurrency", str(CONCURRENCY),
              "--cdn-rps", str(cdn_rps), "--api-rps", str(api_rps), "--api-base", sim.api_base]
    mark = f"width={MARK_WIDTH}"
    sim.log.clear()
    crawls = {
        "cdn": Child([PY, "-m", "crawler.cli.main", "crawl", "--out", str(fresh_dir(work / "out-cdn")), "--limit", "200",
                      *common], logs / "rate-cdn.log", timeout=window + 120),
        "api": Child([PY, "-m", "crawler.cli.main", "crawl", "--out", str(fresh_dir(work / "out-api")), "--limit", "20",
                      "--width", str(MARK_WIDTH), *common], logs / "rate-api.log", timeout=window + 120),
    }

    def split() -> dict[str, dict[str, list[float]]]:
        out: dict[str, dict[str, list[float]]] = {"cdn": {"cdn": [], "api": []}, "api": {"cdn": [], "api": []}}
        for e in sim.log.entries():
            if e.kind == "cdn":
                # The params segment may hold other options too ("width=123,quality=90").
                params = e.path.rsplit("/", 2)[-2].split(",") if e.path.count("/") >= 2 else []
                out["api" if mark in params else "cdn"]["cdn"].append(e.t)
            elif e.kind == "api":
                out["api" if e.query.get("limit") == "20" else "cdn"]["api"].append(e.t)
        return out

    # Each window starts one second after that crawl's first request of the kind it is bound by.
    firsts: dict[str, float] = {}
    deadline = time.monotonic() + 60
    while len(firsts) < 2 and time.monotonic() < deadline and any(c.running() for c in crawls.values()):
        seen = split()
        for name in ("cdn", "api"):
            if name not in firsts and seen[name][name]:
                firsts[name] = min(seen[name][name])
        time.sleep(0.05)
    if firsts:
        end = max(firsts.values()) + 1.0 + window + 0.5
        while time.monotonic() < end and all(c.running() for c in crawls.values()):
            time.sleep(0.1)
    for child in crawls.values():
        child.signal(signal.SIGINT)
    results = {name: child.wait() for name, child in crawls.items()}
    seen = split()
    shutil.rmtree(work / "out-cdn", ignore_errors=True)
    shutil.rmtree(work / "out-api", ignore_errors=True)
    out = {}
    for name in ("cdn", "api"):
        start = firsts.get(name, 0.0) + 1.0
        out[name] = {"cdn": window_stats(seen[name]["cdn"], start, window),
                     "api": window_stats(seen[name]["api"], start, window),
                     "crawl_rc": results[name].rc, "crawl_timed_out": results[name].timed_out,
                     "crawl_cpu_s": round(results[name].cpu, 2), "started": name in firsts,
                     "log_tail": results[name].log_tail[-300:]}
    statuses = sorted({e.status for e in sim.log.entries()})
    out["cdn"]["statuses"] = out["api"]["statuses"] = statuses
    return out["cdn"], out["api"]


def rate(args: argparse.Namespace, report: Report, work: Path) -> dict[str, Any]:
    from crawler.simulator import SimConfig, SimThread

    window = 15.0 if args.quick else 30.0
    cdn_rps, api_rps = 200, 2
    report.print(f"\n4. Rate accuracy: --cdn-rps {cdn_rps} --api-rps {api_rps}, counted at the simulator over "
                 f"{window:.0f} s after the first second; busiest 1 s window over the whole run. Two crawls at once: "
                 f"--limit 200 (CDN-bound) and --limit 20 (API-bound)")
    images = int(cdn_rps * (window + 10))
    results: dict[str, Any] = {"window_s": window, "cdn_rps": cdn_rps, "api_rps": api_rps}
    with SimThread(SimConfig(images=images, body_bytes=4096)) as sim:
        cdn_bound, api_bound = rate_runs(sim, work, window, cdn_rps, api_rps)
    results["cdn_bound_run"] = cdn_bound
    results["api_bound_run"] = api_bound
    c, a = cdn_bound["cdn"], api_bound["api"]
    a_cdnrun = cdn_bound["api"]
    c_ok = c["achieved_rps"] >= 0.97 * cdn_rps
    c_never = c["max_1s_whole_run"] <= cdn_rps
    a_ok = a["achieved_rps"] >= 0.97 * api_rps
    a_never = a["max_1s_whole_run"] <= api_rps and a_cdnrun["max_1s_whole_run"] <= api_rps
    report.print(f"   {'':<34}{'achieved/s':>11}{'% of limit':>11}{'max 1 s (steady)':>18}{'max 1 s (whole)':>17}")
    report.print(f"   {'CDN, --limit 200 (CDN-bound)':<34}{c['achieved_rps']:11.1f}{100 * c['achieved_rps'] / cdn_rps:10.1f}%"
                 f"{c['max_1s_steady']:18}{c['max_1s_whole_run']:17}")
    report.print(f"   {'API, same run (demand-bound)':<34}{a_cdnrun['achieved_rps']:11.2f}"
                 f"{100 * a_cdnrun['achieved_rps'] / api_rps:10.1f}%{a_cdnrun['max_1s_steady']:18}"
                 f"{a_cdnrun['max_1s_whole_run']:17}")
    report.print(f"   {'API, --limit 20 (API-bound)':<34}{a['achieved_rps']:11.2f}{100 * a['achieved_rps'] / api_rps:10.1f}%"
                 f"{a['max_1s_steady']:18}{a['max_1s_whole_run']:17}")
    v1 = report.target("CDN rate >= 97% of --cdn-rps 200", round(c["achieved_rps"], 2), ">= 194/s", c_ok)
    v2 = report.target("CDN never above 200 in any 1 s", c["max_1s_whole_run"], "<= 200", c_never)
    v3 = report.target("API rate >= 97% of --api-rps 2", round(a["achieved_rps"], 3), ">= 1.94/s", a_ok)
    v4 = report.target("API never above 2 in any 1 s", max(a["max_1s_whole_run"], a_cdnrun["max_1s_whole_run"]), "<= 2",
                       a_never)
    report.print(f"   CDN >= 97%: {v1}   CDN never above: {v2}   API >= 97%: {v3}   API never above: {v4}")
    for name, r in (("CDN-bound", cdn_bound), ("API-bound", api_bound)):
        if r["crawl_rc"] not in (130,) or r["crawl_timed_out"]:
            report.print(f"   note: {name} crawl ended with rc {r['crawl_rc']} (expected 130 after SIGINT)"
                         + (" TIMED OUT" if r["crawl_timed_out"] else ""))
    return results


# -- 5. memory -------------------------------------------------------------------------------------

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


# -- 6. resume start-up ----------------------------------------------------------------------------

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


def resume(args: argparse.Namespace, report: Report, work: Path) -> dict[str, Any]:
    sys.path.insert(0, str(BENCH))
    import manifest_gen
    from crawler.simulator import SimConfig, SimThread

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
            if row["records"] and r.get("startup_s") and b.get("startup_s") is not None:
                if r["startup_s"] - b["startup_s"] >= 0.25:  # below that, within the noise of a start
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
        report.print(f"   files the first start left for the second: {sorted({n for r in rows for n in r.get('left_after_first', [])})}")
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
            report.print(f"   {label}: start-up over 10M records projected from {top['records']:,}: {projected:.1f}s "
                         f"(target < 10 s)  {v}")
    return {"rows": rows}


# -- 7. Ray executor overhead ----------------------------------------------------------------------

RAY_CPUS = 2
RAY_WORKERS = (1, 2)
WORKER_LINE = re.compile(r"download worker (\d+): pid (\d+) on (\S+?),")


def proc_cpu_or_none(pid: int) -> float | None:
    """utime+stime in seconds, also of a zombie (its final figure); None when the pid is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def ray_processes(head: int) -> dict[int, str]:
    """pid -> name of the processes the Ray head started: its session, and any descendant that left it."""
    table: dict[int, tuple[int, int, str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            text = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        head_part, _, rest = text.rpartition(")")
        fields = rest.split()
        table[int(name)] = (int(fields[1]), int(fields[3]), head_part.partition("(")[2])
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found = {pid for pid, (_, sid, _) in table.items() if sid == head}
    stack = [head, *found]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return {pid: _process_name(pid, table[pid][2]) for pid in found if pid in table}


def _process_name(pid: int, comm: str) -> str:
    """comm, or for a Python process the script or module it runs (Ray has several)."""
    if not comm.startswith("python"):
        return comm
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:
        return comm
    for i, arg in enumerate(argv[1:], 1):
        if arg == "-m" and i + 1 < len(argv):
            return "ray start" if argv[i + 1] == "ray.scripts.scripts" else argv[i + 1]
        if arg.endswith(".py"):
            return os.path.basename(arg)
    return comm


def foreign_sockets(pids: set[int]) -> list[str]:
    """Sockets of `pids` that listen on, or talk to, anything but loopback (the bench promises 127.0.0.1 only)."""
    import ipaddress
    import socket

    owners: dict[int, int] = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    owners[int(link[8:-1])] = pid
        except OSError:
            continue

    def address(text: str) -> tuple[Any, int]:
        host, port = text.split(":")
        raw = bytes.fromhex(host)
        if len(raw) == 4:
            ip = ipaddress.ip_address(socket.inet_ntop(socket.AF_INET, raw[::-1]))
        else:
            ip = ipaddress.ip_address(socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))))
            ip = getattr(ip, "ipv4_mapped", None) or ip
        return ip, int(port, 16)

    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            inode = int(parts[9])
            if inode not in owners:
                continue
            (local, lport), (remote, rport) = address(parts[1]), address(parts[2])
            listening = remote.is_unspecified
            if listening and not local.is_loopback:
                found.append(f"{table} {'listen' if table.startswith('tcp') else 'bound'} {local}:{lport} (pid {owners[inode]})")
            elif not listening and not remote.is_loopback:
                found.append(f"{table} {local}:{lport} -> {remote}:{rport} (pid {owners[inode]})")
    return found


class RayHead:
    """`ray start --head --block` on loopback in its own session, 2 CPUs, token auth, no usage stats or dashboard.

    `address` for --ray-address, `env` for its drivers, `stop()` (SIGTERM: Ray drains and ends every
    process it started; whatever is left of its session is then killed by pid).
    """

    def __init__(self, log_path: Path, start_timeout: float = 120.0) -> None:
        import secrets
        # Its sockets live under the temp dir, and a Unix socket path must stay under 108 bytes: short, in /tmp.
        self.temp = Path(tempfile.mkdtemp(prefix="civitai-bench-ray-", dir="/tmp"))
        self.env = {**child_env(),
                    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # bind 127.0.0.1, not the default route's address
                    "RAY_USAGE_STATS_ENABLED": "0",
                    # A private token for this cluster: its drivers need it, and nothing is read from ~/.ray.
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.log_path = log_path
        self.log = open(log_path, "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen([PY, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                                      "--num-cpus", str(RAY_CPUS), "--disable-usage-stats", "--include-dashboard=false",
                                      "--port", "0", "--temp-dir", str(self.temp)],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env=self.env, start_new_session=True)
        self.pid = self.proc.pid
        LIVE.add(self.pid)
        self.leftovers: list[str] = []
        self.address = ""
        deadline = t0 + start_timeout
        marker = self.temp / "ray_current_cluster"
        while time.monotonic() < deadline and self.proc.poll() is None:
            if marker.exists() and b"Ray runtime started" in log_path.read_bytes():
                self.address = marker.read_text().strip()
                break
            time.sleep(0.1)
        if not self.address:
            tail = log_path.read_bytes()[-600:].decode("utf-8", "replace")
            self.stop()
            raise RuntimeError(f"ray start --head did not come up in {start_timeout:.0f}s "
                               f"(rc {self.proc.returncode}): {tail!r}")
        self.startup_s = time.monotonic() - t0
        if not self.address.startswith("127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"the Ray head is not on 127.0.0.1: {self.address}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                kill_group(self.pid)
                self.proc.wait(10)
        for _ in range(50):  # its processes outlive `ray start` by a moment while they shut down
            left = {pid: name for pid, name in ray_processes(self.pid).items() if alive(pid)}
            if not left:
                break
            time.sleep(0.1)
        else:
            self.leftovers = [f"{name} ({pid})" for pid, name in left.items()]
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        LIVE.discard(self.pid)
        self.log.close()
        shutil.rmtree(self.temp, ignore_errors=True)


class CpuSampler:
    """utime+stime of the Ray head's processes and of watched pids (the driver) every `period` s, in a thread.

    The last figure of a process is kept after it exits: the actors, killed when their driver ends,
    are counted up to the last sample before that (at most `period` s of their CPU is missed, and
    they are idle by then). Head processes are looked for anew every `rescan` s and on `sample(full=True)`.
    """

    def __init__(self, head: int, period: float = 0.05, rescan: float = 0.5) -> None:
        self.head, self.period, self.rescan = head, period, rescan
        self.lock = threading.Lock()
        self.members: set[int] = set()
        self.names: dict[int, str] = {}  # every head process seen, with its latest name
        self.watch: set[int] = set()
        self.last: dict[int, float] = {}
        self.series: list[tuple[float, dict[int, float]]] | None = None
        self._next_scan = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except (OSError, ValueError, IndexError):  # a process that vanished mid-read: the next tick sees it
                pass
            self._stop.wait(self.period)

    def sample(self, full: bool = False) -> None:
        with self.lock:
            now = time.monotonic()
            if full or now >= self._next_scan:
                found = ray_processes(self.head)
                self.members = set(found)
                self.names.update(found)
                self._next_scan = now + self.rescan
            snap = {}
            for pid in self.members | self.watch:
                cpu = proc_cpu_or_none(pid)
                if cpu is not None:
                    snap[pid] = cpu
            self.last.update(snap)
            if self.series is not None:
                self.series.append((now, snap))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def series_at(series: list[tuple[float, dict[int, float]]], pid: int, t: float, before: float) -> float:
    """The CPU of `pid` at time t, interpolated between samples; `before` ahead of its first sample."""
    prev: tuple[float, float] | None = None
    for at, snap in series:
        if pid not in snap:
            continue
        if at >= t:
            if prev is None:
                return before
            (t0, c0), (t1, c1) = prev, (at, snap[pid])
            return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1
        prev = (at, snap[pid])
    return prev[1] if prev else before


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

    n_images = 2_000 if args.quick else 5_000
    rounds = 1 if args.quick else 2
    report.print(f"\n7. Ray executor: the same crawl of {n_images} images (~{CEILING_BODY // 1024} KB, --concurrency "
                 f"{CONCURRENCY}, unthrottled) with --executor local and --executor ray with " +
                 " and ".join(f"{w}" for w in RAY_WORKERS) + f" actor(s) on one local Ray head ({RAY_CPUS} CPUs) "
                 f"started for the group; {rounds} interleaved round(s)" + (", best of each by work CPU per image"
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
        daemons_at_start = {pid: name for pid, name in ray_processes(head.pid).items()}
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
            shutil.rmtree(out, ignore_errors=True)
            if warm.rc != 0:
                raise RuntimeError(f"the warm-up crawl with --executor ray failed (rc {warm.rc}): {warm.log_tail[-400:]!r}")
            for r in range(rounds):
                order = tools[r % len(tools):] + tools[:r % len(tools)]
                for name, workers in order:
                    out = fresh_dir(work / "out")
                    one = ray_measure(name, r, command(out, workers), out, sim, n, url_set, logs, workers, head,
                                      sampler, 300)
                    runs.append(one)
                    shutil.rmtree(out, ignore_errors=True)
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
    shutil.rmtree(work / "out", ignore_errors=True)
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
    for name, workers in tools[1:]:
        m = best[name]
        good = local is not None and m["all_ok"]
        cpu = m["work_ms_per_image"] / local["work_ms_per_image"] if good else None
        with_daemons = ((m["work_cpu"] + m["daemons_cpu"]) / m["images"]) / (local["work_cpu"] / local["images"]) \
            if good else None
        steady = m["steady_work_ms_per_image"] / local["steady_work_ms_per_image"] \
            if good and m["steady_work_ms_per_image"] and local["steady_work_ms_per_image"] else None
        rate = m["rate"] / local["rate"] if good else None
        xfer = m["xfer_rate"] / local["xfer_rate"] if good and m["xfer_rate"] and local["xfer_rate"] else None
        per_round = []
        for r in range(rounds):
            a = [x for x in runs if x["tool"] == name and x["round"] == r and x["ok"]]
            b = [x for x in runs if x["tool"] == "local" and x["round"] == r and x["ok"]]
            if a and b:
                per_round.append(round(a[0]["work_ms_per_image"] / b[0]["work_ms_per_image"], 3))
        ratios[name] = {"cpu_per_image": cpu, "cpu_per_image_with_daemons": with_daemons, "steady_cpu_per_image": steady,
                        "throughput": rate, "xfer_throughput": xfer, "cpu_per_image_per_round": per_round}
        v = report.target(f"{name} work CPU/image < 1.15 x local", cpu, "< 1.15", None if cpu is None else cpu < 1.15)
        report.print(f"   {name}/local: CPU per image {fmt(cpu, '.2f')} (target < 1.15)  {v}; with daemons "
                     f"{fmt(with_daemons, '.2f')}; steady {fmt(steady, '.2f')}; throughput {fmt(rate, '.2f')} "
                     f"(xfer {fmt(xfer, '.2f')}); per round {per_round}")
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


# -- main ------------------------------------------------------------------------------------------

GROUPS = ("ceiling", "latency", "rate", "memory", "resume", "ray")


def _interrupt(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: clean up like Ctrl-C (children killed, temp folder removed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="civitai-mirror benchmark (see the module docstring)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes: ~3 minutes instead of ~10")
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
    report.print(f"machine: {info['nproc']} CPUs ({info['cpu_model']}), Linux {info['kernel']}, load {' '.join(info['loadavg_at_start'])}; "
                 f"output on {info['filesystem']['type']} ({info['filesystem']['device']} at {info['filesystem']['mount']})")
    report.print(f"python {info['python']}, " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()) +
                 f"; crawler at {info['git']['commit']}" + (" + uncommitted changes" if info["git"]["crawler_dirty"] else ""))
    aria = ensure_aria2c(not args.no_install, report) if "ceiling" in only or "latency" in only else {"path": None}
    if aria.get("path"):
        report.print(f"aria2c: {aria.get('version')}" + (" (installed by this bench with apt-get)" if aria["installed_by_bench"] else ""))
    report.data["machine"] = info
    report.data["aria2c"] = aria
    report.data["mode"] = "quick" if args.quick else "full"
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _interrupt)
    code = 0
    try:
        flags = crawl_flags()
        for group in GROUPS:
            if group not in only:
                continue
            t = time.monotonic()
            try:
                if group == "ceiling":
                    report.data["ceiling"] = ceiling(args, report, work, aria.get("path"), flags)
                elif group == "latency":
                    report.data["latency"] = latency(args, report, work, aria.get("path"))
                elif group == "rate":
                    report.data["rate"] = rate(args, report, work)
                elif group == "memory":
                    report.data["memory"] = memory(args, report, work)
                elif group == "resume":
                    report.data["resume"] = resume(args, report, work)
                elif group == "ray":
                    report.data["ray"] = ray_group(args, report, work, flags)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one broken group must not hide the others' numbers
                import traceback
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


if __name__ == "__main__":
    sys.exit(main())
