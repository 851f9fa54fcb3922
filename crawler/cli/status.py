"""`civitai-mirror status`: what a mirror holds and why its last crawl stopped; with --max-age, a health check.

Exit 0, or 1 when --max-age is given and no crawl or follow pass completed within it; 2 when --out is not a mirror.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from crawler.cli.parsing import PROG, Subparsers, add_mirror, duration, require_mirror
from crawler.config.settings import state_root
from crawler.state import report
from crawler.stops import EXIT_FAILED, EXIT_OK

DESCRIPTION = ("Show what a mirror holds (done, gone, failed images and their bytes) and why its last crawl or follow "
               "pass stopped. With --max-age, a health check: exit 1 unless a run completed within that time.")


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status", help="what a mirror holds and why its last crawl stopped", description=DESCRIPTION)
    add_mirror(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--max-age", default=None, metavar="DURATION", help="health check: exit 1 unless a crawl or "
                        "follow pass completed within DURATION (e.g. 30m)")
    return parser


def run(args: argparse.Namespace) -> int:
    root = state_root(args.out, args.state)
    max_age = duration(args.max_age, "--max-age") if args.max_age else None
    require_mirror(root)
    summary = report.summarise(root)
    if args.json:
        sys.stdout.write(orjson.dumps(summary.as_dict(), option=orjson.OPT_NON_STR_KEYS).decode() + "\n")
    else:
        for text in report.format_summary(summary):
            print(text)
    if max_age is not None:
        age = summary.success_age()
        if age is None or age > max_age:
            sys.stderr.write(f"{PROG}: unhealthy: no complete crawl or pass in the last {max_age:g}s\n")
            return EXIT_FAILED
    return EXIT_OK
