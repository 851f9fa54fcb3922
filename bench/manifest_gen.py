"""Write a manifest of N `done` image records, fast, for the resume start-up benchmark.

    python bench/manifest_gen.py OUT_FILE N [--no-markers]

Records have the crawler's `done` shape (see `Crawl._download`) with a small `item`. Ids are
1,000,000,000 + k: ten digits for every k < 10^9, far above the simulator's catalogue (~12,000,000+),
and still one-digit CPython ints (< 2^30), like real CivitAI ids. Ten fixed-width digits let one
block of 10,000 lines be formatted once and stamped per block with bytes.replace, ~10x faster
than formatting every line.
"""

from __future__ import annotations

import os
import sys

BASE_ID = 1_000_000_000
BLOCK = 10_000
# Placeholders: the 5 block digits of the id, the first 3 of them and the last 2 (see the shard layout).
_B5, _B3, _B2 = b"~~~~~", b"^^^", b"``"
_LINE = (
    b'{"kind":"image","id":1~~~~~%(j)04d,"uuid":null,'
    b'"url":"http://127.0.0.1:9/c/1~~~~~%(j)04d/width=450/1~~~~~%(j)04d.jpeg",'
    b'"status":"done","path":"images/1^^^/``%(k)d/1~~~~~%(j)04d.jpeg",'
    b'"sha256":"%(h)064x","bytes":%(n)d,"width":450,"content_type":"image/jpeg",'
    b'"item":{"id":1~~~~~%(j)04d,"width":832},"t":1700000000.%(j)04d}\n'
)

_MARKER = b'{"kind":"durable","upto":%d,"files":%d,"fsync":true,"t":1700000000.5}\n'


def _template() -> bytes:
    return b"".join(
        _LINE % {b"j": j, b"k": j // 1000, b"h": (j * 0x9E3779B97F4A7C15) & ((1 << 256) - 1), b"n": 40_000 + j}
        for j in range(BLOCK)
    )


def generate(path: str, n: int, markers: bool = True) -> int:
    """Writes records for ids BASE_ID+0 .. BASE_ID+n-1; returns the bytes written.

    With `markers`, a `durable` marker follows every block, as the crawler's group commit writes
    them, so a resuming crawl has nothing to re-check (without any marker it takes every record
    as it is, but holds them all until the end of the load).
    """
    if n > BLOCK * 100_000:
        raise ValueError("at most 10^9 records")
    template = _template()
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for block in range((n + BLOCK - 1) // BLOCK):
            digits = b"%05d" % block
            data = template.replace(_B5, digits).replace(_B3, digits[:3]).replace(_B2, digits[3:])
            left = n - block * BLOCK
            if left < BLOCK:  # the last, partial block: cut after its last wanted line
                data = data[: _line_end(data, left)]
            if markers:  # what group commit appends once the records before it are fsynced
                data += _MARKER % (written + len(data), min(left, BLOCK))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            written += len(data)
    finally:
        os.close(fd)
    return written


def _line_end(data: bytes, lines: int) -> int:
    end = 0
    for _ in range(lines):
        end = data.index(b"\n", end) + 1
    return end


if __name__ == "__main__":
    size = generate(sys.argv[1], int(sys.argv[2]), markers="--no-markers" not in sys.argv[3:])
    print(f"{sys.argv[2]} records, {size} bytes")
