"""Command line for the simulator: `python -m crawler.simulator --port 0 --api-429 0.05 ...`.

Prints `listening on http://HOST:PORT/api/v1` once bound, serves until a signal: exits 0 on SIGTERM (asked
to stop) and 130 on SIGINT (Ctrl-C, as any interrupted command). With `--tls` it serves HTTPS and prints a
second line, `CA certificate in PATH`, the test CA a client must trust; it exits 2 with one line when TLS
cannot be set up (trustme missing).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import fields

from crawler.simulator.config import (
    API_MODES,
    CURSOR_STYLES,
    ERROR_BODIES,
    REGIONS,
    FaultConfig,
    SimConfig,
    require_loopback,
)
from crawler.simulator.server import SimServer
from crawler.simulator.tls import TlsUnavailable

_EXIT_INTERRUPTED = 130  # as crawler.stops.EXIT_INTERRUPTED (the simulator imports nothing of the crawler)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SimConfig()
    parser.add_argument("--host", default=defaults.host, metavar="ADDR", help="loopback address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=defaults.port, metavar="PORT", help="port, 0 = any free one (default)")
    parser.add_argument("--images", type=int, default=defaults.images, metavar="N", help="visible items (default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, metavar="N", help="same seed, same site (default %(default)s)")
    parser.add_argument("--body-bytes", type=int, default=defaults.body_bytes, metavar="BYTES", help="typical file size in bytes")
    parser.add_argument("--hidden", type=float, default=defaults.hidden, metavar="X",
                        help="extra hidden items, as a fraction of --images (short and empty pages)")
    parser.add_argument("--gone", type=float, default=defaults.gone, metavar="X", help="fraction of files deleted (404/410)")
    parser.add_argument("--cursor-style", choices=CURSOR_STYLES, default=defaults.cursor_style, metavar="STYLE",
                        help=f"how cursors look: {', '.join(CURSOR_STYLES)} (default %(default)s)")
    parser.add_argument("--api-mode", choices=API_MODES, default=defaults.api_mode, metavar="MODE",
                        help=f"how /images misbehaves for hostile-input tests: {', '.join(API_MODES)} "
                        "(default %(default)s)")
    parser.add_argument("--hostile-items", action="store_true", default=defaults.hostile_items,
                        help="add the hostile items (crawler.simulator.hostile) to every query's first page")
    parser.add_argument("--tls", action="store_true", default=defaults.tls,
                        help="serve the API and the CDN over HTTPS, signed by a test CA made at start (needs trustme)")
    parser.add_argument("--tls-ca-file", default=defaults.tls_ca_file, metavar="PATH",
                        help="with --tls: write the CA's PEM here (default: a temporary file, removed at exit)")
    today = parser.add_argument_group("2026", "behaviours of today's API, each off by default")
    today.add_argument("--depth-cap", type=int, default=defaults.depth_cap, metavar="N",
                       help="a query's /images chain ends (no nextCursor) after N items; 0 = never (default)")
    today.add_argument("--stale-cursors", action="store_true", default=defaults.stale_cursors,
                       help="POST /_sim/switch-backend then makes every cursor issued before it answer 400")
    today.add_argument("--sites", action="store_true", default=defaults.sites,
                       help="answer as civitai.com/.red/.green by Host name or a /com, /red, /green path prefix")
    today.add_argument("--sfw-sites", default=",".join(defaults.sfw_sites), metavar="LIST",
                       help="with --sites: sites that list PG and PG-13 only (default %(default)s)")
    today.add_argument("--anonymous-sfw", action="store_true", default=defaults.anonymous_sfw,
                       help="callers without an API key see PG and PG-13 only")
    today.add_argument("--region", choices=REGIONS, default=defaults.region, metavar="|".join(REGIONS),
                       help="restricted: PG and PG-13 only; blocked: every API request answers 451")
    today.add_argument("--error-body", choices=ERROR_BODIES, default=defaults.error_body, metavar="|".join(ERROR_BODIES),
                       help='4xx bodies as {"error": ...} or {"message": ...} (default %(default)s)')
    today.add_argument("--real-shapes", action="store_true", default=defaults.real_shapes,
                       help="items take the shapes recorded in 2026 (crawler.simulator.shapes)")
    today.add_argument("--span-days", type=float, default=defaults.span_days, metavar="D",
                       help="createdAt spread over D days up to the newest item; 0 = 540 (default)")
    today.add_argument("--null-base-model", type=float, default=defaults.null_base_model, metavar="X",
                       help="share of images whose baseModel is null (default %(default)s)")
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
        depth_cap=args.depth_cap,
        stale_cursors=args.stale_cursors,
        sites=args.sites,
        sfw_sites=tuple(s.strip() for s in args.sfw_sites.split(",") if s.strip()),
        anonymous_sfw=args.anonymous_sfw,
        region=args.region,
        error_body=args.error_body,
        real_shapes=args.real_shapes,
        span_days=args.span_days,
        null_base_model=args.null_base_model,
        tls=args.tls,
        tls_ca_file=args.tls_ca_file,
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
    try:
        return asyncio.run(_serve(cfg))
    except TlsUnavailable as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2


async def _serve(cfg: SimConfig) -> int:
    stop = asyncio.Event()
    received: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(sig: int) -> None:
        received.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    async with SimServer(cfg) as sim:
        print(f"listening on {sim.api_base}", flush=True)
        if sim.ca_file is not None:
            print(f"CA certificate in {sim.ca_file} (crawl --ca-file {sim.ca_file}, or SSL_CERT_FILE={sim.ca_file})",
                  flush=True)
        await stop.wait()
    return _EXIT_INTERRUPTED if received[0] == signal.SIGINT else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crawler.simulator", description="Simulated CivitAI on 127.0.0.1")
    add_arguments(parser)
    return run(parser.parse_args(argv))
