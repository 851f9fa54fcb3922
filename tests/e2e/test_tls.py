"""HTTPS as the real CDN serves it: the simulator's test CA trusted through --ca-file or SSL_CERT_FILE.

Every crawl here talks to `SimConfig(tls=True)` over real TLS on 127.0.0.1; a crawl that does not trust
the CA must stop with one line naming the host and "certificate verify failed", never a traceback.
"""

from __future__ import annotations

import pytest
from conftest import assert_complete, cli, crawl_config, done_records, flags_list, run_crawl

from crawler.run.crawl import Crawl
from crawler.simulator import SimConfig, SimThread
from crawler.stops import EXIT_FAILED, EXIT_OK

ALL = {"browsingLevel": "31"}
# One retry: an untrusted certificate is no better on the second try, and the test need not wait.
QUICK_FAIL = {"retries": 1, "backoff_base": 0.01, "backoff_max": 0.02}


def _tls_crawled_everything(sim: SimThread) -> None:
    cdn = [e for e in sim.log.entries() if e.kind == "cdn"]
    assert cdn and all(e.status == 200 for e in cdn)
    assert sim.handshakes > 0, "no TLS handshake reached the simulator: was HTTPS used at all?"


def test_crawl_over_tls_with_ca_file_mirrors_every_image(tmp_path):
    with SimThread(SimConfig(images=300, seed=17, tls=True)) as sim:
        assert sim.api_base.startswith("https://") and sim.ca_file is not None
        result = cli("crawl", "--out", str(tmp_path), "--ca-file", sim.ca_file,
                     *flags_list(sim.api_base, browsing_level=31), timeout=90)
        expected = sim.catalogue.expected(ALL)
        _tls_crawled_everything(sim)
    assert result.returncode == EXIT_OK, result.stderr[-2000:]
    assert_complete(tmp_path, expected)
    assert all(r["url"].startswith("https://") for r in done_records(tmp_path))


def test_crawl_over_tls_trusts_ssl_cert_file(tmp_path):
    with SimThread(SimConfig(images=200, seed=18, tls=True)) as sim:
        assert sim.ca_file is not None
        result = cli("crawl", "--out", str(tmp_path), *flags_list(sim.api_base, browsing_level=31),
                     env={"SSL_CERT_FILE": sim.ca_file}, timeout=90)
        expected = sim.catalogue.expected(ALL)
        _tls_crawled_everything(sim)
    assert result.returncode == EXIT_OK, result.stderr[-2000:]
    assert_complete(tmp_path, expected)


async def test_ssl_cert_file_set_after_aiohttp_is_imported_still_counts(tmp_path, monkeypatch):
    # aiohttp builds its default context once, at import (long done in this process): sessions must read
    # the CA store themselves when they are made.
    with SimThread(SimConfig(images=120, seed=19, tls=True)) as sim:
        assert sim.ca_file is not None
        monkeypatch.setenv("SSL_CERT_FILE", sim.ca_file)
        outcome = await run_crawl(tmp_path, sim.api_base, browsing_level=31)
        expected = sim.catalogue.expected(ALL)
    assert outcome.exit_code == EXIT_OK
    assert_complete(tmp_path, expected)


def test_without_the_ca_the_crawl_fails_in_one_line(tmp_path):
    with SimThread(SimConfig(images=50, seed=20, tls=True)) as sim:
        result = cli("crawl", "--out", str(tmp_path), *flags_list(sim.api_base, browsing_level=31, **QUICK_FAIL),
                     timeout=60)
        port = sim.port
    assert result.returncode == EXIT_FAILED, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert f"127.0.0.1:{port}" in last and "certificate verify failed" in last, last
    assert "--ca-file" in last, last


def test_a_ca_file_of_another_ca_fails_the_same_way(tmp_path):
    with SimThread(SimConfig(images=20, seed=21, tls=True)) as other, \
            SimThread(SimConfig(images=50, seed=22, tls=True)) as sim:
        assert other.ca_file is not None
        result = cli("crawl", "--out", str(tmp_path), "--ca-file", other.ca_file,
                     *flags_list(sim.api_base, browsing_level=31, **QUICK_FAIL), timeout=60)
        port = sim.port
    assert result.returncode == EXIT_FAILED, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert f"127.0.0.1:{port}" in last and "certificate verify failed" in last and "Traceback" not in result.stderr


@pytest.mark.parametrize("content", [None, b"not a certificate\n"], ids=["missing", "not-pem"])
def test_an_unusable_ca_file_is_one_config_error(tmp_path, content):
    pem = tmp_path / "ca.pem"
    if content is not None:
        pem.write_bytes(content)
    result = cli("crawl", "--out", str(tmp_path / "m"), "--ca-file", str(pem), "--api-base",
                 "https://127.0.0.1:9/api/v1", timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--ca-file" in lines[0] and str(pem) in lines[0], result.stderr


@pytest.mark.slow
async def test_ray_actors_trust_the_ca_file(ray_cluster, tmp_path):
    # The CA reaches the actors with the shipped config: they make their own sessions on their node.
    with SimThread(SimConfig(images=200, seed=23, tls=True)) as sim:
        assert sim.ca_file is not None
        cfg = crawl_config(tmp_path, sim.api_base, browsing_level=31, executor="ray", ray_address=ray_cluster,
                           download_workers=2, ca_file=sim.ca_file)
        outcome = await Crawl(cfg).run()
        expected = sim.catalogue.expected(ALL)
        _tls_crawled_everything(sim)
    assert outcome.exit_code == EXIT_OK
    assert_complete(tmp_path, expected)


def test_an_untrusted_certificate_is_not_retried(tmp_path):
    """Retrying cannot make a CA trusted: the first refused handshake ends the crawl (default retry settings)."""
    with SimThread(SimConfig(images=20, seed=23, tls=True)) as sim:
        result = cli("crawl", "--out", str(tmp_path), *flags_list(sim.api_base, browsing_level=31), timeout=60)
        handshakes = sim.handshakes
    assert result.returncode == EXIT_FAILED, result.stderr[-2000:]
    assert "certificate verify failed" in result.stderr.strip().splitlines()[-1]
    assert handshakes == 1, f"{handshakes} handshakes: the refused certificate was retried"
