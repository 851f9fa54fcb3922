"""Constants and small helpers every benchmark group shares: paths, crawl command lines, the report,
machine facts and the aria2c reference tool.

Nothing here starts a process that outlives its call; `ensure_tool` may apt-get install aria2 or valgrind
(only as root, and only when asked).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONCURRENCY = 16
CEILING_IMAGES = 5_000
CEILING_BODY = 50 * 1024
UNTHROTTLED = ["--cdn-rps", "100000", "--api-rps", "1000"]
# The bench's simulator has no depth cap: a crawl past --depth-cap's default (50,000) must not end depth-capped.
CRAWL_COMMON = ["--browsing-level", "31", "--limit", "200", "--progress", "none", "--depth-cap", "1000000000"]

def child_env() -> dict[str, str]:
    """The environment without proxy settings: every request of the bench goes to 127.0.0.1 directly."""
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}



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
        retire(path)
    path.mkdir(parents=True)
    return path


def retire(path: Path) -> None:
    """Move a finished run's output into `.retired/` beside it instead of deleting it; the bench's work
    folder (and the trash with it) is removed when the bench ends.

    Why not delete: ext4 without a journal (this VM's disk) skips, when it allocates an inode, every free
    one deleted in the last 60 s (5 min while its table block is dirty), looking each up one at a time
    (perf: `recently_deleted` under `__ext4_new_inode`). Deleting one run's 5,000 files made the next
    run's file creation cost ~0.6 ms of kernel CPU more per file, which was the "2.7x disk noise" of
    earlier rounds.
    """
    if not path.exists():
        return
    trash = path.parent / ".retired"
    trash.mkdir(exist_ok=True)
    path.rename(trash / f"{path.name}-{time.monotonic_ns()}")


def per_image(counts: dict[int, dict[str, Any]]) -> dict[str, float]:
    """Counts of two runs of different sizes (images -> {key: count}) made per image: the larger's minus the
    smaller's over the difference in images, so start-up drops out (the instructions and bytecodes groups)."""
    small, large = sorted(counts)
    return {k: (counts[large].get(k, 0) - counts[small].get(k, 0)) / (large - small)
            for k in set(counts[small]) | set(counts[large])}


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


def compile_bytecode() -> str:
    """Compile the crawler's bytecode before anything is measured, as a regular `pip install` does.

    An editable install leaves it to the first run, and where PYTHONDONTWRITEBYTECODE is set (this
    machine sets it) no run ever writes it: every command then compiled ~80 modules at start (~60 ms
    of CPU, ~12 us per image of a 5,000-image crawl) while the bare loop imported aiohttp's compiled
    files. Python reads what is compiled whatever that variable says.
    """
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "crawler")], check=True, cwd=ROOT, env=child_env(),
                   timeout=300, stdout=subprocess.DEVNULL)
    return "bytecode compiled"


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
    return ensure_tool("aria2c", "aria2", allow_install, report, "aria2c rows skipped")


def ensure_tool(binary: str, package: str, allow_install: bool, report: Report, without: str) -> dict[str, Any]:
    """`binary`'s path and version, apt-get installing `package` when it is missing and that is allowed;
    `without` says what the bench leaves out when it stays missing."""
    found = shutil.which(binary)
    info: dict[str, Any] = {"path": found, "installed_by_bench": False, "note": None}
    if found is None and allow_install:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            info["note"] = f"{binary} missing and apt-get unavailable (not root or no apt): {without}"
        else:
            report.print(f"{binary} is missing: installing it with apt-get (apt-get update; apt-get install -y {package}) ...")
            env = {**child_env(), "DEBIAN_FRONTEND": "noninteractive"}
            try:
                subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=300, check=True)
                subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", package], env=env,
                               capture_output=True, timeout=300, check=True)
            except (subprocess.SubprocessError, OSError) as exc:
                info["note"] = f"apt-get could not install {package} ({type(exc).__name__}): {without}"
            found = shutil.which(binary)
            if found:
                info.update(path=found, installed_by_bench=True, note="installed by this bench with apt-get")
    elif found is None:
        info["note"] = f"{binary} missing (--no-install): {without}"
    if found:
        try:
            out = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30).stdout
            info["version"] = out.split("\n", 1)[0]
        except (subprocess.SubprocessError, OSError):
            info["version"] = "?"
    if info["note"]:
        report.print(f"{binary}: {info['note']}")
    return info
