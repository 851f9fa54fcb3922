"""Shared fixtures: the simulator on 127.0.0.1, crawls run in-process or as a real subprocess."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from crawler.config import settings as config
from crawler.run.crawl import Crawl, Outcome
from crawler.simulator import FaultConfig, SimConfig, SimServer
from crawler.simulator.log import most_within  # noqa: F401  (the unit tests count rate windows as the simulator does)
from crawler.state.manifest import MANIFEST_NAME, iter_records
from crawler.state.records import key_of

# Fast defaults for tests: no politeness delays, short backoff, quiet output.
FAST = {"api_rps": "1000", "cdn_rps": "5000", "backoff_base": "0.01", "backoff_max": "0.05", "progress": "none",
        "concurrency": "8", "limit": "50", "timeout": "5", "shutdown_grace": "2"}


@pytest.fixture
def sim_factory():
    """`async with sim_factory(images=..., faults=FaultConfig(...)) as sim:`"""
    def make(faults: FaultConfig | None = None, **kw: Any) -> SimServer:
        return SimServer(SimConfig(faults=faults or FaultConfig(), **kw))
    return make


def crawl_config(out: Path | str, api_base: str, env: dict[str, str] | None = None, state: Path | None = None,
                 **flags: Any) -> config.CrawlConfig:
    values = {**FAST, **{k: (v if isinstance(v, (bool, list, tuple)) or v is None else str(v)) for k, v in flags.items()}}
    values["api_base"] = api_base
    return config.build(out, values, None, env or {}, state=state)


async def run_crawl(out: Path, api_base: str, env: dict[str, str] | None = None, **flags: Any) -> Outcome:
    return await Crawl(crawl_config(out, api_base, env, **flags), log=_NullLog()).run()


class _NullLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.lines.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def records(out: Path) -> list[dict[str, Any]]:
    return list(iter_records(out / MANIFEST_NAME))


def done_records(out: Path) -> list[dict[str, Any]]:
    return [r for r in records(out) if r["kind"] == "image" and r["status"] == "done"]


def effective(out: Path) -> dict[Any, dict[str, Any]]:
    latest = {}
    for r in records(out):
        if r["kind"] == "image":
            latest[key_of(r)] = r
    return latest


def mirrored_hashes(out: Path) -> dict[int, str]:
    """id -> sha256 of the file actually on disk, for every effective done record."""
    result = {}
    for key, r in effective(out).items():
        if r["status"] == "done":
            result[key] = hashlib.sha256((out / r["path"]).read_bytes()).hexdigest()
    return result


def assert_complete(out: Path, expected: dict[int, str]) -> None:
    got = mirrored_hashes(out)
    missing = set(expected) - set(got)
    extra = set(got) - set(expected)
    wrong = {k for k in set(got) & set(expected) if got[k] != expected[k]}
    assert not missing and not extra and not wrong, (
        f"missing {len(missing)} {sorted(missing)[:5]}, extra {len(extra)}, wrong hash {len(wrong)} {sorted(wrong)[:5]}")
    # Part files live in .partial/ (or are anonymous O_TMPFILEs): none may be left there, and every file in
    # the images tree is one a done record names (no orphan from an unrecorded or superseded download).
    partial = out / ".partial"
    assert not (partial.is_dir() and [p for p in partial.rglob("*") if p.is_file()]), "part files left in .partial/"
    named = {str(r["path"]) for r in effective(out).values() if r["status"] == "done"}
    on_disk = {str(p.relative_to(out)) for p in (out / "images").rglob("*") if p.is_file()}
    assert on_disk <= named, f"{len(on_disk - named)} file(s) no done record names: {sorted(on_disk - named)[:3]}"


def throttle_violations(cdn: list[Any], retry_after: float, in_flight: float) -> tuple[list[str], list[str]]:
    """Every 429 in `cdn` (the simulator's log entries, arrival order) checked against its Retry-After.

    (same-URL) the URL that got the 429 is not asked again before Retry-After has passed -- no grace:
    the worker that was told to wait knows it at once; (pool) no request at all arrives from `in_flight`
    after the 429 until Retry-After has passed -- `in_flight` allows for requests already past the gate
    when the 429 came. Returns the violations of each rule, described."""
    slack = 0.02  # the two clocks are one (the simulator runs in this host's monotonic time); scheduling only
    same_url, pool = [], []
    for i, e in enumerate(cdn):
        if e.status != 429:
            continue
        again = next((n for n in cdn[i + 1:] if n.path == e.path), None)
        if again is not None and again.t < e.t + retry_after - slack:
            same_url.append(f"{e.path} asked again {again.t - e.t:.3f}s after its 429")
        during = [n for n in cdn[i + 1:] if e.t + in_flight < n.t < e.t + retry_after - slack]
        if during:
            pool.append(f"{len(during)} request(s) within {in_flight:.2f}-{retry_after:.2f}s after the 429 at {e.t:.3f}")
    return same_url, pool


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "crawler", *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, **kw)


def flags_list(api_base: str, **flags: Any) -> list[str]:
    values = {**FAST, "api_base": api_base, **{k: str(v) for k, v in flags.items()}}
    out = []
    for k, v in values.items():
        out += ["--" + k.replace("_", "-"), v]
    return out


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray (ray.init(num_cpus=2)) on loopback, shared by the tests; yields its address for --ray-address."""
    import logging
    # Before Ray is imported: a single-machine cluster binds 127.0.0.1, not the default route's address.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    try:
        import ray
    except ImportError:
        pytest.fail("Ray is not installed (pip install '.[ray]')")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    except Exception as e:  # pragma: no cover - depends on the machine
        pytest.fail(f"Ray cannot start here: {e}")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def wait_for_ray_cpus(cpus: float = 2, limit: float = 60.0) -> None:
    """Until actors of a killed driver are gone and their CPUs free again."""
    import ray
    deadline = time.monotonic() + limit
    while ray.available_resources().get("CPU", 0) < cpus:
        assert time.monotonic() < deadline, f"Ray still holds CPUs: {ray.available_resources()}"
        time.sleep(0.2)


