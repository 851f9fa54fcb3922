"""The bare ceiling: one aiohttp session, N workers, streamed writes, no hashing, manifest or fsync.

    python bench/bare.py URLS_FILE OUT_DIR|- CONCURRENCY      (- = read and discard the bodies)

HTTPS URLs are verified with aiohttp's default context, which trusts what SSL_CERT_FILE names when it
is set in the environment this process starts with (the `tls` and `large` groups use that).
"""

import asyncio
import sys

import aiohttp


async def main(urls: list[str], out: str, n: int) -> int:
    todo = iter(enumerate(urls))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=n), auto_decompress=False) as session:
        async def worker() -> None:
            for i, url in todo:
                async with session.get(url) as response:
                    response.raise_for_status()
                    if out == "-":
                        async for _ in response.content.iter_chunked(1 << 18):
                            pass
                    else:
                        # Blocking writes on purpose: the bare baseline is the simplest loop that saves files.
                        with open(f"{out}/{i}", "wb") as f:  # noqa: ASYNC230
                            async for chunk in response.content.iter_chunked(1 << 18):
                                f.write(chunk)
        await asyncio.gather(*(worker() for _ in range(n)))
    return 0


if __name__ == "__main__":
    urls_file, out_dir, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(urls_file) as f:
        url_list = f.read().split()
    try:  # the crawler runs on uvloop when it is installed; so does its ceiling
        import uvloop
        run = uvloop.run
    except ImportError:
        run = asyncio.run
    sys.exit(run(main(url_list, out_dir, concurrency)))
