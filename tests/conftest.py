"""Shared fixtures: the simulator on 127.0.0.1, crawls run in-process or as a real subprocess."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from crawler.config import settings as config
from crawler.run.crawl import Crawl, Outcome
from crawler.state.manifest import MANIFEST_NAME, iter_records, key_of
from crawler.simulator import FaultConfig, SimConfig, SimServer

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
    assert not list((out / "images").rglob("*.part")), "a .part file stands in the images tree"


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
        pytest.skip("Ray is not installed (pip install '.[ray]')")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    except Exception as e:  # pragma: no cover - depends on the machine
        pytest.skip(f"Ray cannot start here: {e}")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def wait_for_ray_cpus(cpus: float = 2, limit: float = 60.0) -> None:
    """Until actors of a killed driver are gone and their CPUs free again."""
    import ray
    deadline = time.monotonic() + limit
    while ray.available_resources().get("CPU", 0) < cpus:
        assert time.monotonic() < deadline, f"Ray still holds CPUs: {ray.available_resources()}"
        time.sleep(0.2)
