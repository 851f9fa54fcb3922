"""Command line for the simulator: `python -m crawler.simulator --port 0 --api-429 0.05 ...`.

Prints `listening on http://HOST:PORT/api/v1` once bound, serves until SIGINT/SIGTERM, exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import fields

from .config import API_MODES, CURSOR_STYLES, FaultConfig, SimConfig, require_loopback
from .server import SimServer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SimConfig()
    parser.add_argument("--host", default=defaults.host, help="loopback address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=defaults.port, help="port, 0 = any free one (default)")
    parser.add_argument("--images", type=int, default=defaults.images, help="visible items (default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="same seed, same site (default %(default)s)")
    parser.add_argument("--body-bytes", type=int, default=defaults.body_bytes, help="typical file size in bytes")
    parser.add_argument("--hidden", type=float, default=defaults.hidden,
                        help="extra hidden items, as a fraction of --images (short and empty pages)")
    parser.add_argument("--gone", type=float, default=defaults.gone, help="fraction of files deleted (404/410)")
    parser.add_argument("--cursor-style", choices=CURSOR_STYLES, default=defaults.cursor_style)
    parser.add_argument("--api-mode", choices=API_MODES, default=defaults.api_mode,
                        help="how /images misbehaves for hostile-input tests (default %(default)s)")
    parser.add_argument("--hostile-items", action="store_true", default=defaults.hostile_items,
                        help="add the hostile items (crawler.simulator.hostile) to every query's first page")
    faults = parser.add_argument_group("faults", "per-request probabilities and fault shapes")
    for f in fields(FaultConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            faults.add_argument(flag, action="store_true", default=f.default)
        else:
            faults.add_argument(flag, type=float, default=f.default, metavar="X", help=f"default {f.default:g}")


def config_from(args: argparse.Namespace) -> SimConfig:
    faults = FaultConfig(**{f.name: getattr(args, f.name) for f in fields(FaultConfig)})
    host = "127.0.0.1" if args.host == "localhost" else args.host
    return SimConfig(
        images=args.images,
        seed=args.seed,
        body_bytes=args.body_bytes,
        hidden=args.hidden,
        gone=args.gone,
        cursor_style=args.cursor_style,
        api_mode=args.api_mode,
        hostile_items=args.hostile_items,
        faults=faults,
        host=host,
        port=args.port,
    )


def run(args: argparse.Namespace) -> int:
    try:
        require_loopback("127.0.0.1" if args.host == "localhost" else args.host)
        cfg = config_from(args)
    except ValueError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(cfg))


async def _serve(cfg: SimConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with SimServer(cfg) as sim:
        print(f"listening on {sim.api_base}", flush=True)
        await stop.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crawler.simulator", description="Simulated CivitAI on 127.0.0.1")
    add_arguments(parser)
    return run(parser.parse_args(argv))
