"""`civitai-mirror plan`: split one query into partitions that `crawl --plan` runs as parallel cursor chains.

Only the query is used: nothing is written but the plan file. `--by period` reads the API server's clock
(one request); failing that is exit 1, a bad flag exit 2.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from crawler.cli.parsing import PROG, Subparsers, duration
from crawler.cli.running import run_loop
from crawler.config.settings import Option, add_arguments, build, given
from crawler.feed import partitions
from crawler.logs import plain
from crawler.net.retry import RequestFailed
from crawler.stops import EXIT_FAILED, EXIT_OK

DESCRIPTION = ("Write a plan: the query (the crawl flags below) split by creator, base model, model version or "
               "period window. `crawl --plan FILE` runs every partition as its own cursor chain, in parallel, into "
               "one mirror; they share --api-rps, so partitions help where one chain is slowed by the API's latency, "
               "not past the rate limit. Only the query flags are listed; the other crawl flags are accepted "
               "(the same command line can plan and crawl) and ignored.")
# Besides the query (what is asked and filtered, recorded in the plan), what reading the server's clock uses.
_CLOCK = frozenset({"api_base", "timeout", "retries", "backoff_base", "backoff_max"})


def meaningful(o: Option) -> bool:
    """The options a plan depends on."""
    return o.query or o.identity or o.name in _CLOCK


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "plan", help="split one query into partitions that a crawl runs as parallel cursor chains",
        description=DESCRIPTION)
    parser.add_argument("--by", required=True, choices=partitions.BY, help="username, base-model, model-version: one "
                        "partition per --value; period: Day, then Week, Month, Year and all time each without the "
                        "shorter window (measured from the API server's clock, its Date header: one API request)")
    parser.add_argument("--value", action="append", default=[], metavar="V", help="a value to split by (repeatable)")
    parser.add_argument("--to", required=True, metavar="FILE", help="where to write the plan (JSON)")
    parser.add_argument("--overlap", default="1d", metavar="DURATION", help="--by period: how far windows overlap, "
                        "which is how long after planning a crawl may still use the plan (default: 1d)")
    parser.add_argument("--config", metavar="FILE", help="TOML file of settings; flags win over it")
    add_arguments(parser, shown=meaningful)
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = build(".", given(args), args.config)  # only the query is used: nothing is written but the plan
    overlap = timedelta(seconds=duration(args.overlap, "--overlap"))
    now = None
    if args.by == "period":
        partitions.split(cfg, args.by, args.value, datetime.now(timezone.utc), overlap)  # usage errors first
        try:
            now = run_loop(partitions.server_now(cfg))
        except RequestFailed as e:
            sys.stderr.write(f"{PROG}: error: could not read the API server's clock: {e}\n")
            return EXIT_FAILED
    made = partitions.split(cfg, args.by, args.value, now, overlap)
    partitions.save(Path(args.to), cfg, args.by, made, overlap)
    print(f"wrote {len(made)} partition(s) to {args.to}" + (
        f" (windows measured from the API server's clock, {now.isoformat()}; usable for {args.overlap})"
        if now else ""))
    for partition in made:
        print(f"  {partition.name}: {plain(partition.settings)}")
    print(f"run them: {PROG} crawl --plan {args.to} --out DIR [the same query flags]")
    return EXIT_OK
