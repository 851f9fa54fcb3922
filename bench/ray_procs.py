"""The processes of a local Ray head for group `ray`: starting and stopping the head, finding its
processes and any socket not on loopback, and sampling their CPU over a run.

No Ray process outlives `RayHead.stop`; a head that does not come up raises.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import CLK_TCK, PY, ROOT, child_env
from bench.procs import LIVE, kill_group

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
