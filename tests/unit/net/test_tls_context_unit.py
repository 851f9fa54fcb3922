"""net/sessions.py's choice of TLS context: aiohttp's own (built at its import) while the CA settings it
was built from still hold, a context of ours as soon as they differ -- so a CA store is read once per
command, and never missed.

Each case runs in a fresh interpreter, because what counts is what the environment was when aiohttp
was first imported, and this test process imported it long ago.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

_PROBE = """
import os, ssl, sys, types
first = sys.argv[1]
if first == "aiohttp":
    import aiohttp  # before the crawler: its settings at aiohttp's import are unknown
import crawler
import aiohttp
from crawler.net.sessions import tls_context
cfg = types.SimpleNamespace(ca_file=None)
def kind():
    got = tls_context(cfg)
    return "aiohttp" if got is True else "ours" if isinstance(got, ssl.SSLContext) else repr(got)
print(kind())
action = sys.argv[2]
if action == "touch":
    path = os.environ["SSL_CERT_FILE"]
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
elif action == "setenv":
    os.environ["SSL_CERT_FILE"] = sys.argv[3]
elif action == "unset":
    del os.environ["SSL_CERT_FILE"]
print(kind())
"""


def _probe(tmp_path: Path, first: str, action: str, *extra: str, cert: str | None = None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    if cert is not None:
        env["SSL_CERT_FILE"] = cert
    result = subprocess.run([sys.executable, "-c", _PROBE, first, action, *extra], capture_output=True, text=True,
                            env=env, timeout=50, cwd=Path(__file__).resolve().parents[3])
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


@pytest.fixture
def bundle(tmp_path: Path) -> str:
    import trustme

    path = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


def test_the_ca_settings_aiohttp_was_built_with_reuse_its_context(tmp_path, bundle):
    assert _probe(tmp_path, "crawler", "none", cert=bundle) == ["aiohttp", "aiohttp"]


def test_a_ca_file_changed_since_makes_our_own(tmp_path, bundle):
    assert _probe(tmp_path, "crawler", "touch", cert=bundle) == ["aiohttp", "ours"]


def test_ssl_cert_file_set_after_the_import_makes_our_own(tmp_path, bundle):
    assert _probe(tmp_path, "crawler", "setenv", bundle) == ["aiohttp", "ours"]
    other = tmp_path / "other.pem"
    other.write_bytes(Path(bundle).read_bytes())
    assert _probe(tmp_path, "crawler", "setenv", str(other), cert=bundle) == ["aiohttp", "ours"]


def test_no_ca_settings_at_all_is_aiohttps_default(tmp_path, bundle):
    assert _probe(tmp_path, "crawler", "unset", cert=bundle) == ["aiohttp", "aiohttp"]


def test_aiohttp_imported_before_the_crawler_leaves_the_settings_unknown(tmp_path, bundle):
    assert _probe(tmp_path, "aiohttp", "none", cert=bundle) == ["ours", "ours"]
