"""`civitai-mirror compact`: rewrite the manifest as one record per image, keeping the old one as .prev.

Refuses (exit 2, one line) while a crawl holds the mirror's lock or when --out is not a mirror.
"""

from __future__ import annotations

import argparse

from crawler.cli.parsing import Subparsers, add_mirror, require_mirror
from crawler.config.settings import state_root
from crawler.state.compact import compact
from crawler.state.lock import DirLock
from crawler.stops import EXIT_OK

DESCRIPTION = ("Rewrite the manifest as one record per image, dropping superseded records; the old manifest is kept "
               "as manifest.jsonl.prev. Refuses (exit 2) while a crawl or follow holds the mirror.")


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "compact", help="rewrite the manifest as one record per image (keeps the old one as manifest.jsonl.prev); "
        "refuses while a crawl holds the mirror", description=DESCRIPTION)
    add_mirror(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    root = state_root(args.out, args.state)
    require_mirror(root)
    with DirLock(root):
        result = compact(root)
    print(f"compacted {root / 'manifest.jsonl'}: {result.records_before} -> {result.records_after} records, "
          f"{result.bytes_before / 1e6:.1f} -> {result.bytes_after / 1e6:.1f} MB (previous kept as manifest.jsonl.prev)")
    return EXIT_OK
