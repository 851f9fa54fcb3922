"""The simulator's TLS mode over real sockets: HTTPS with a test CA made at start, its PEM file, the
handshake count, and the one-line failures (an untrusting client, trustme missing).
"""

from __future__ import annotations

import hashlib
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from crawler.net.errors import connection_detail
from crawler.simulator import SimConfig, SimServer, SimThread
from crawler.simulator.server import TLS_STATS_PATH


async def test_api_and_cdn_are_served_over_https_signed_by_the_ca_file():
    async with SimServer(SimConfig(images=30, seed=5, tls=True)) as sim:
        assert sim.api_base.startswith("https://127.0.0.1:") and sim.ca_file is not None
        trust = ssl.create_default_context(cafile=sim.ca_file)
        connector = aiohttp.TCPConnector(limit=2, ssl=trust)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(f"{sim.api_base}/images", params={"limit": "10"}) as response:
                page = await response.json()
            items = page["items"]
            assert items and all(item["url"].startswith(sim.origin + "/") for item in items)
            assert page["metadata"]["nextPage"].startswith(sim.api_base)
            expected = sim.catalogue.expected()
            for item in items[:4]:
                async with session.get(item["url"]) as response:
                    assert response.status == 200
                    body = await response.read()
                assert hashlib.sha256(body).hexdigest() == expected[item["id"]]
            async with session.get(sim.origin + TLS_STATS_PATH) as response:
                counted = (await response.json())["handshakes"]
        # A connector of two connections: two handshakes, however many requests rode on them.
        assert 1 <= counted == sim.handshakes <= 2


async def test_a_client_without_the_ca_fails_certificate_verification():
    async with SimServer(SimConfig(images=5, tls=True)) as sim:
        url = f"{sim.api_base}/images"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl.create_default_context())) as session:
            with pytest.raises(aiohttp.ClientConnectorCertificateError) as caught:
                await session.get(url)
    text = connection_detail(caught.value, url)
    assert text.startswith(f"TLS certificate of 127.0.0.1:{sim.port} not trusted (certificate verify failed: "), text
    assert text.endswith(f"for GET {url}"), text


def test_the_ca_file_goes_at_stop_unless_its_path_was_given(tmp_path):
    with SimThread(SimConfig(images=5, tls=True)) as sim:
        made = sim.ca_file
        assert made is not None and Path(made).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert not Path(made).exists()
    chosen = tmp_path / "ca.pem"
    with SimThread(SimConfig(images=5, tls=True, tls_ca_file=str(chosen))) as sim:
        assert sim.ca_file == str(chosen)
    assert chosen.read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_plain_http_has_no_ca_and_no_handshakes():
    with SimThread(SimConfig(images=5)) as sim:
        assert sim.ca_file is None and sim.handshakes == 0 and sim.api_base.startswith("http://")
    with pytest.raises(ValueError, match="tls_ca_file needs tls"):
        SimConfig(tls_ca_file="/tmp/x.pem")


def test_sim_tls_prints_where_the_ca_is_and_removes_it_at_exit():
    proc = subprocess.Popen([sys.executable, "-m", "crawler", "sim", "--tls", "--images", "10"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        listening = proc.stdout.readline()
        ca_line = proc.stdout.readline()
        assert listening.startswith("listening on https://127.0.0.1:"), listening
        assert ca_line.startswith("CA certificate in "), ca_line
        ca_file = ca_line.split()[3]
        assert Path(ca_file).read_text().startswith("-----BEGIN CERTIFICATE-----")
        assert f"--ca-file {ca_file}" in ca_line and f"SSL_CERT_FILE={ca_file}" in ca_line
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert not Path(ca_file).exists()


def test_tls_without_trustme_is_one_line_and_exit_2():
    hide = ("import sys; sys.modules['trustme'] = None; from crawler.simulator.cli import main; "
            "sys.exit(main(['--tls', '--images', '5']))")
    result = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == ["simulator: --tls needs the trustme package: pip install trustme"]
