"""fetch/download.py's host check, answered once per origin: every URL gets the answer `urls.is_allowed`
gives it, however its origin was seen before (credentials, case, ports, look-alike hosts, no path)."""

from __future__ import annotations

import random

from crawler import urls
from crawler.fetch.download import Downloader

ALLOWED = frozenset({"cdn.test", "image.civitai.com"})
TRICKY = [
    "https://cdn.test/a.jpeg", "https://cdn.test/b.jpeg?x=1", "https://CDN.test/c.jpeg", "https://cdn.test:8443/d",
    "https://user@cdn.test/e", "https://cdn.test@evil.test/f", "https://cdn.test.evil.test/g", "http://cdn.test/h",
    "ftp://cdn.test/i", "https://cdn.test", "https://cdn.test?next=/j", "https://evil.test#/cdn.test/k",
    "//cdn.test/l", "cdn.test/m", "https:/cdn.test//n", "https://image.civitai.com/xG1/o/width=450/o.jpeg",
    "https://image.civitai.com\\@evil.test/p", "javascript://cdn.test/%0aalert(1)", "https://[::1]/q", "",
]


def _downloader() -> Downloader:
    return Downloader(None, None, None, None, ALLOWED, 1 << 20, "ua", random.Random(1))  # type: ignore[arg-type]


def test_each_url_gets_the_answer_of_urls_is_allowed_whatever_was_cached_before():
    downloader = _downloader()
    for url in TRICKY + TRICKY[::-1]:  # the second pass meets every origin cached
        assert downloader._is_allowed(url) == urls.is_allowed(url, ALLOWED), url
    assert downloader._is_allowed("https://cdn.test/a.jpeg") and not downloader._is_allowed("https://evil.test/a")
