"""No network: a crawl that cannot reach the API says which host, why in words, and which request.

Nothing leaves the machine: a closed loopback port, and a name looked up through a resolver on
127.0.0.1 where none listens (a private mount namespace; the test fails where one cannot be made).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from conftest import cli

from crawler.net.errors import connection_detail
from crawler.stops import EXIT_FAILED

FAST = ["--retries", "1", "--backoff-base", "0.01", "--backoff-max", "0.02", "--progress", "none"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_refused_connection_is_said_in_words():
    port = closed_port()
    url = f"http://127.0.0.1:{port}/api/v1/images"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError) as caught:
            await session.get(url)
    text = connection_detail(caught.value, url)
    assert text == f"cannot connect to 127.0.0.1:{port}: connection refused: nothing listens on that port for GET {url}"


def test_crawl_against_a_closed_port_names_host_cause_and_request(tmp_path):
    port = closed_port()
    result = cli("crawl", "--out", str(tmp_path / "m"), "--api-base", f"http://127.0.0.1:{port}/api/v1", *FAST)
    assert result.returncode == EXIT_FAILED
    last = result.stderr.strip().splitlines()[-1]
    assert f"127.0.0.1:{port}" in last and "connection refused" in last, last
    assert f"GET http://127.0.0.1:{port}/api/v1/images" in last and "(last request )" not in last, last


def _no_dns(tmp_path: Path) -> list[str]:
    """A command prefix that runs with /etc/resolv.conf pointing at 127.0.0.1 (where no resolver listens)."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    unshare = shutil.which("unshare")
    probe = [unshare or "unshare", "-m", "sh", "-c", f"mount --bind {resolv} /etc/resolv.conf"]
    if unshare is None or subprocess.run(probe, capture_output=True, timeout=10).returncode != 0:
        # A missing prerequisite under `make test` is a failure, not a skip (CI runs as root).
        pytest.fail("cannot make a private mount namespace here (needs root and unshare)")
    return [unshare, "-m", "sh", "-c", f'mount --bind {resolv} /etc/resolv.conf && exec "$@"', "sh"]


def test_crawl_against_a_name_that_does_not_resolve_says_so(tmp_path):
    command = [*_no_dns(tmp_path), sys.executable, "-m", "crawler", "crawl", "--out", str(tmp_path / "m"),
               "--api-base", "http://nonexistent.invalid/api/v1", *FAST]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_FAILED, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "cannot resolve host nonexistent.invalid" in last and "ClientConnector" not in last, last
    assert "GET http://nonexistent.invalid/api/v1/images" in last, last
