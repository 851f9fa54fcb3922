"""Child processes of the bench: each in its own process group, reaped with rusage, killed at its
timeout; `LIVE` holds every group not yet reaped so `main` can kill them all on the way out.

`SimProcess` runs bench/simserve.py (the simulator in its own process, so its CPU is measured apart).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import BENCH, CLK_TCK, PY, ROOT, child_env

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
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
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
