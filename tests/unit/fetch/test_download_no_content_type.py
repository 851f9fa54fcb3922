"""fetch/download.py on a 200 without a Content-Type header: failed `not-media`, its error saying
`Content-Type missing`, and nothing stored.

The simulator always names a type (its `cdn_html` fault sends text/html), and aiohttp's server adds
`application/octet-stream` to a response without one, so a bare asyncio server on 127.0.0.1 writes
the response by hand. The Downloader talks to it over a real socket and writes a real DiskStore.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from conftest import crawl_config

from crawler.fetch.download import Downloader
from crawler.net.sessions import open_net
from crawler.store.disk import DiskStore

pytestmark = pytest.mark.timeout(60)

_BODY = b"\xff\xd8\xff\xe0 not announced as anything"
_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(_BODY)) + _BODY


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.readuntil(b"\r\n\r\n")  # the request's head; a GET has no body
        writer.write(_RESPONSE)
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def test_a_200_without_content_type_is_failed_not_media_saying_it_is_missing(tmp_path: Path) -> None:
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = crawl_config(tmp_path, f"http://127.0.0.1:{port}/api/v1", retries=1)
    store = DiskStore(tmp_path)
    try:
        await store.clear_leftovers()
        async with open_net(cfg, api=False, cdn=True) as net:
            result = await Downloader.from_config(cfg, net, store, random.Random(1)).outcome(
                7, f"http://127.0.0.1:{port}/cdn/7.jpeg")
    finally:
        await store.close()
        server.close()
        await server.wait_closed()
    assert (result.status, result.reason) == ("failed", "not-media"), result
    assert "Content-Type missing" in (result.error or ""), result
    images = tmp_path / "images"
    assert not images.exists() or not [p for p in images.rglob("*") if p.is_file()]
