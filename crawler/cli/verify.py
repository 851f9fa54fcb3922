"""`civitai-mirror verify`: re-hash every done file against the manifest.

Prints each problem (missing, size or sha256 mismatch) with its path; exit 1 on any problem, 0 when
every file matches, 2 when --out is not a mirror or its store cannot be opened (or, with --repair, a
crawl holds it). --repair marks each problem's image for refetch (`state/repair.py`): the next crawl
or follow pass fetches it again.
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path

from crawler.cli.parsing import STORAGE_OPTION_HELP, Subparsers, add_mirror, require_mirror
from crawler.cli.running import run_loop
from crawler.config.settings import ConfigError, state_root
from crawler.locations import parse_storage_options
from crawler.state import repair, report
from crawler.state.lock import DirLock
from crawler.state.report import Problem
from crawler.stops import EXIT_FAILED, EXIT_OK
from crawler.store.base import Store
from crawler.store.errors import StoreError
from crawler.store.paths import make_store

DESCRIPTION = ("Re-hash every file the manifest records as done and compare size and sha256; print each missing or "
               "mismatched file. Exit 0 when every file matches, 1 on any problem. With --repair, each such image is "
               "marked for refetch: the next crawl (or follow pass) fetches it again.")


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "verify", help="re-hash every done file against the manifest (exit 1 on any problem)",
        description=DESCRIPTION)
    add_mirror(parser)
    parser.add_argument("--storage-option", action="append", metavar="KEY=VALUE", help=STORAGE_OPTION_HELP)
    parser.add_argument("--repair", action="store_true", help="mark each missing or mismatched image for refetch in "
                        "the manifest, so the next crawl or follow pass fetches it again (refuses while a crawl holds "
                        "the mirror)")
    return parser


def run(args: argparse.Namespace) -> int:
    root = state_root(args.out, args.state)
    require_mirror(root)
    try:
        options = parse_storage_options(args.storage_option or ())
    except ValueError as e:
        raise ConfigError(f"--storage-option: {e}") from None
    with DirLock(root) if args.repair else nullcontext():
        checked, problems = run_loop(_verify(root, make_store(args.out, options)))
        marked = repair.mark_for_refetch(root, problems) if args.repair else 0
    for p in problems:
        print(f"{p.what}: {p.path or '(no path)'} (image {p.key})")
    print(f"verified {checked} file(s): {len(problems)} problem(s)")
    if args.repair and problems:
        print(f"marked {marked} image(s) for refetch: the next crawl or follow pass fetches them again")
    return EXIT_FAILED if problems else EXIT_OK


async def _verify(root: Path, store: Store) -> tuple[int, list[Problem]]:
    try:
        await store.open()
    except (StoreError, OSError) as e:
        await store.close()
        raise ConfigError(f"--out {store.url}: {e}") from None
    try:
        return await report.verify(root, store)
    finally:
        await store.close()
