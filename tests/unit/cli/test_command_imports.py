"""Only the command given is imported: a crawl does not pay for the simulator, the web page or the exports,
and `status` not even for aiohttp (each in a fresh interpreter, as a user starts it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from crawler.cli.main import main
code = main(sys.argv[1:])
print(code, *sorted(m for m in sys.modules if m.startswith(("crawler.", "aiohttp"))))
"""


def modules_after(*argv: str) -> tuple[int, set[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60)
    code, *names = done.stdout.split()
    return int(code), set(names)


@pytest.mark.parametrize("argv, absent", [
    (("crawl", "--out", "{tmp}/m", "--config", "{tmp}/missing.toml"),
     ("crawler.simulator", "crawler.serve.app", "crawler.export.dataset", "crawler.cli.follow", "crawler.cli.plan")),
    (("status", "--out", "{tmp}"), ("aiohttp", "crawler.fetch.download", "crawler.simulator", "crawler.cli.crawl")),
])
def test_a_command_imports_only_what_it_runs(tmp_path, argv, absent):
    code, names = modules_after(*(a.replace("{tmp}", str(tmp_path)) for a in argv))
    assert code == 2  # each fails on its input after its command was imported
    assert f"crawler.cli.{argv[0]}" in names
    assert not [m for m in absent if m in names], sorted(names)
