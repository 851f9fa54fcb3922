"""The simulator in its own process for the benchmark, with pre-generated bodies and a stdin control line.

    python bench/simserve.py [--prewarm] [every `python -m crawler.simulator` option]

Same site as `python -m crawler.simulator` (it uses its argument parser and `SimServer`), plus:
- `--prewarm`: every visible item's body is generated before the port opens and kept in a dict, so
  the CDN answers from memory and the body maker's cost stays out of the measurement;
- uvloop when installed (the crawler uses it too), so the simulator is less likely the bottleneck;
- prints one JSON line `{"api_base": ..., "prewarmed": N, "loop": ...}` once bound;
- reads commands from stdin, one per line, and answers one JSON line each:
  `reset` clears the request log; `stats` counts the log since the last reset (per kind, and the
  first/last CDN arrival in time.monotonic(), which is system-wide, so the parent can compare);
  `times` lists the arrival time of every API and CDN request since the last reset.
Stops on SIGINT/SIGTERM or when stdin closes (the parent died).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crawler.simulator import SimServer
from crawler.simulator import cli as sim_cli


def prewarm(server: SimServer) -> int:
    """Generate each visible item's body once and serve it from a dict from then on."""
    from crawler.simulator.options import parse_options

    catalogue = server.catalogue
    original = catalogue.file
    memo: dict = {}

    def file(record, size):  # type: ignore[no-untyped-def]
        key = (record.uuid, size)
        found = memo.get(key)
        if found is None:
            found = memo[key] = original(record, size)
        return found

    for item in catalogue.items:
        path = item["url"]
        parts = [p for p in path.split("/") if p]
        record = catalogue.by_uuid(parts[-3])
        if record is not None:
            file(record, parse_options(parts[-2]))
    catalogue.file = file  # the CDN handler looks the method up per request
    return len(memo)


def stats(server: SimServer) -> dict:
    entries = server.log.entries()
    kinds = Counter(e.kind for e in entries)
    statuses = Counter(f"{e.kind}:{e.status}" for e in entries)
    cdn = [e.t for e in entries if e.kind == "cdn"]
    return {"kinds": dict(kinds), "statuses": dict(statuses),
            "first_cdn": min(cdn) if cdn else None, "last_cdn": max(cdn) if cdn else None}


def control(server: SimServer, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for line in sys.stdin:
        command = line.strip()
        if command == "reset":
            server.log.clear()
            answer: dict = {"ok": True}
        elif command == "stats":
            answer = stats(server)
        elif command == "times":  # arrival times (time.monotonic(), system-wide) of the API and CDN requests
            entries = server.log.entries()
            answer = {kind: [e.t for e in entries if e.kind == kind] for kind in ("api", "cdn")}
        else:
            answer = {"error": f"unknown command {command!r}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    loop.call_soon_threadsafe(stop.set)  # stdin closed: the parent is gone


async def serve(server: SimServer, prewarmed: int, loop_name: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(json.dumps({"api_base": server.api_base, "prewarmed": prewarmed, "loop": loop_name, "pid": os.getpid()}),
              flush=True)
        threading.Thread(target=control, args=(server, loop, stop), daemon=True).start()
        await stop.wait()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sim_cli.add_arguments(parser)
    parser.add_argument("--prewarm", action="store_true", help="pre-generate every body and serve it from memory")
    args = parser.parse_args()
    server = SimServer(sim_cli.config_from(args))
    prewarmed = 0
    if args.prewarm:
        started = time.monotonic()
        try:
            prewarmed = prewarm(server)
        except Exception as exc:  # the simulator changed shape: serve as it is, and say so
            print(f"simserve: prewarm failed ({type(exc).__name__}: {exc}); serving without it", file=sys.stderr)
        else:
            print(f"simserve: prewarmed {prewarmed} bodies in {time.monotonic() - started:.1f}s", file=sys.stderr)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(server, prewarmed, "asyncio"))
    return uvloop.run(serve(server, prewarmed, "uvloop"))


if __name__ == "__main__":
    sys.exit(main())
