"""`civitai-mirror crawl`: mirror the feed into a directory (or an object store), or `--dry-run` it.

Exit codes come from `crawler.stops`: 0 all done, 1 some items failed or an error stopped the crawl,
2 bad usage (a `ConfigError`, printed by `main` as one line), 130 interrupted (resumable).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import orjson

from crawler.cli.parsing import STATE_HELP, Subparsers
from crawler.cli.running import handle_signals, join_ray, log_file, run_loop
from crawler.config.settings import ConfigError, CrawlConfig, add_arguments, build, given
from crawler.feed import partitions
from crawler.feed.partitions import Partition
from crawler.logs import plain
from crawler.run import dryrun
from crawler.run.crawl import Crawl
from crawler.stops import exit_code

DESCRIPTION = ("Mirror the /api/v1/images feed into DIR. Rerunning the same command resumes. The API key, if any, is "
               "read from the environment variable CIVITAI_API_KEY and sent only to the API, as an Authorization "
               "header. Exit codes: 0 all done, 1 some items failed or an error stopped the crawl, 2 bad usage, "
               "130 interrupted (resumable).")


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "crawl", help="mirror the /images feed into DIR (resumes where it stopped)", description=DESCRIPTION)
    parser.add_argument("--out", required=True, metavar="DIR|URL", help="mirror directory (images/, manifest.jsonl), "
                        "or an object store URL such as s3://bucket/prefix (then give --state)")
    parser.add_argument("--state", metavar="DIR", help=STATE_HELP)
    parser.add_argument("--config", metavar="FILE", help="TOML file of settings (keys as the flags, with _); flags win "
                        "over it")
    parser.add_argument("--dry-run", action="store_true", help="walk the pages (at the API rate), fetch no image, "
                        "and print what a crawl would fetch and an estimate of its size; writes no image and no "
                        "manifest record, only its count (dry-run-counts.json, beside the manifest), which gives "
                        "a later crawl of the same query an ETA")
    parser.add_argument("--plan", metavar="FILE", help="run the partitions of a plan (made by `civitai-mirror plan`) "
                        "as parallel cursor chains into this one mirror, each with its own checkpoints")
    add_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = build(args.out, given(args), args.config, state=args.state)
    chains: list[Partition] | None = None
    expires = None
    if args.plan:
        if args.dry_run:
            raise ConfigError("--dry-run does not take --plan; dry-run the query itself")
        chains, expires = _load_plan(cfg, args.plan)
    if args.dry_run:
        return run_loop(_dry_run(cfg))
    join_ray(cfg)
    return run_loop(_crawl(cfg, chains, expires if chains else None))


def _load_plan(cfg: CrawlConfig, path: str) -> tuple[list[Partition], float | None]:
    """The plan's partitions, each checked against this crawl's settings before anything starts."""
    loaded, header = partitions.load(Path(path))
    for partition in loaded:
        partitions.apply_partition(cfg, partition)
    if orjson.loads(orjson.dumps(cfg.query_summary())) != header.get("query"):
        made_for = header.get("query")
        raise ConfigError(f"--plan {path} was made for the query "
                          f"{plain(made_for) if isinstance(made_for, dict) else made_for}, this crawl asks "
                          f"{plain(cfg.query_summary())}: give the same query flags")
    expires = partitions.expires(header)
    if expires is not None and time.time() >= expires:
        raise ConfigError(f"--plan {path}: its period windows were cut {header.get('created')} and overlap by "
                          f"{header.get('overlap_seconds', 0) / 3600:g}h, which has passed: items may have moved "
                          "between windows. Make a new plan (done images are not fetched again)")
    return loaded, expires


async def _dry_run(cfg: CrawlConfig) -> int:
    if cfg.state.exists() and not cfg.state.is_dir():
        raise ConfigError(f"--state {cfg.state} exists and is not a directory")
    report = await dryrun.dry_run(cfg)
    for text in dryrun.format_report(report):
        print(text)
    return exit_code(report.reason, 0)


async def _crawl(cfg: CrawlConfig, chains: list[Partition] | None, plan_expires: float | None) -> int:
    with log_file(cfg) as also:
        crawl = Crawl(cfg, partitions=chains, plan_expires=plan_expires, log_file=also)
        with handle_signals(crawl.log, crawl.request_stop, crawl.force_exit):
            outcome = await crawl.run()
    return outcome.exit_code
