"""A reference below the bare loop: a minimal keep-alive HTTP/1.1 GET loop on asyncio streams, no aiohttp.

    python bench/raw.py URLS_FILE OUT_DIR CONCURRENCY

Not a usable client: one host (the first URL's), plain HTTP, Content-Length bodies only (anything else
stops it with an error, so the bench's file check fails rather than counting a wrong file), no
redirects, timeouts or retries. It measures what an HTTP client's own work per image costs: the gap
between it and bench/bare.py is aiohttp's (and yarl's) share of the bare loop.
"""

import asyncio
import os
import sys
from urllib.parse import urlsplit


async def main(urls: list[str], out: str, n: int) -> int:
    todo = iter(enumerate(urls))
    first = urlsplit(urls[0])
    host, port = first.hostname or "127.0.0.1", first.port or 80
    if first.scheme != "http":
        raise SystemExit(f"raw.py speaks plain HTTP only, not {first.scheme}")

    async def worker() -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        for i, url in todo:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            path = url[url.index("/", len("http://")):]
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\n\r\n".encode())
            head = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
            status = int(head[0].split(b" ", 2)[1])
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            if status != 200 or b"content-length" not in headers:
                raise SystemExit(f"{url}: status {status}, headers {headers}")
            body = await reader.readexactly(int(headers[b"content-length"]))
            # Blocking writes, as bench/bare.py's.
            fd = os.open(f"{out}/{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            if headers.get(b"connection", b"").lower() == b"close":
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(n)))
    return 0


# The same entry as bench/bare.py's, written again on purpose: each script imports only what it measures
# (its start-up is counted by the instructions group), so neither imports a shared bench module.
if __name__ == "__main__":
    urls_file, out_dir, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(urls_file) as f:
        url_list = f.read().split()
    try:
        import uvloop
        run = uvloop.run
    except ImportError:
        run = asyncio.run
    sys.exit(run(main(url_list, out_dir, concurrency)))
