"""`civitai-mirror serve`: a local web page to browse, search and curate one mirror (see crawler/serve/app.py).

Listens on 127.0.0.1 unless told otherwise and prints its URL. Reads the manifest and images only
(the index, thumbnails and exclusion list live under the state directory), so it runs beside a
crawl or `follow` without taking the mirror's lock. Exit codes: 0 after Ctrl-C, 2 on a bad option.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from crawler.locations import is_remote, local_path
from crawler.serve.app import Server, make_app

DEFAULT_PORT = 8800


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="browse, search and curate a mirror in a local web page", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="the mirror's image directory")
    parser.add_argument("--state", metavar="DIR", help="the directory holding the manifest (default: --out)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0 picks a free one)")


class ServeError(RuntimeError):
    """One readable line: why the server cannot start."""


def folders(out: str, state: str | None) -> tuple[Path, Path]:
    """(state dir, images dir), both local directories that exist."""
    if is_remote(out):
        raise ServeError(f"--out {out} is an object store: serve reads images from a local directory")
    images = local_path(out)
    state_dir = local_path(state) if state else images
    for name, path in (("--out", images), ("--state", state_dir)):
        if not path.is_dir():
            raise ServeError(f"{name} {path} is not a directory")
    return state_dir, images


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """Host headers this server answers to; empty (any) when listening on every address."""
    names = {host.lower()}
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and address.is_unspecified:
        return frozenset()
    if (address is not None and address.is_loopback) or host == "localhost":
        names |= {"localhost", "127.0.0.1", "[::1]"}
    return frozenset(f"{name}:{port}" for name in names)


async def start(state_dir: Path, images: Path, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """Start serving; (runner to `cleanup()`, base URL). Port 0 picks a free port (tests)."""
    server = Server(state_dir, images)
    family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    server.hosts = allowed_hosts(host, bound)
    runner = web.AppRunner(make_app(server), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{bound}/"


async def serve_forever(state_dir: Path, images: Path, host: str, port: int) -> None:
    runner, url = await start(state_dir, images, host, port)
    print(f"serving {images} at {url} (Ctrl-C stops)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    try:
        state_dir, images = folders(args.out, args.state)
        asyncio.run(serve_forever(state_dir, images, args.host, args.port))
    except ServeError as err:
        print(f"civitai-mirror serve: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the port is taken, the address is not ours
        print(f"civitai-mirror serve: cannot listen on {args.host}:{args.port}: {err.strerror or err}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="civitai-mirror serve", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
