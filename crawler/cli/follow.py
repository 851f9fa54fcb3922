"""`civitai-mirror follow`: keep a mirror current, a newest-first pass every --interval, optionally with metrics.

Ends only on a signal (130), a fatal API answer or a full disk (1); bad flags are exit 2 before anything runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from crawler.cli.parsing import STATE_HELP, Subparsers
from crawler.cli.running import handle_signals, join_ray, log_file, run_loop
from crawler.config.follow_options import add_follow_arguments, follow_values
from crawler.config.settings import ConfigError, CrawlConfig, add_arguments, build, given
from crawler.config.sources import read_toml
from crawler.run import metrics
from crawler.run.follow import Follower, FollowSettings

DESCRIPTION = ("Run as a service: the first pass is a full crawl (resumable), each later pass walks the feed "
               "newest-first only down to what earlier passes mirrored, then sleeps --interval. API outages are "
               "waited out with backoff; only a signal (exit 130), a fatal API answer (bad key, region, bad query) or "
               "a full disk (exit 1) end it. Takes every crawl option; the feed is always walked with --sort Newest.")


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "follow", help="keep a mirror current: a newest-first pass every --interval, forever", description=DESCRIPTION)
    parser.add_argument("--out", required=True, metavar="DIR|URL", help="mirror directory or object store URL")
    parser.add_argument("--state", metavar="DIR", help=STATE_HELP)
    parser.add_argument("--config", metavar="FILE", help="TOML file of settings (keys as the flags, with _; follow's "
                        "own too: interval, passes, metrics_port, compact_above); flags win over it")
    add_follow_arguments(parser)
    add_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = build(args.out, given(args), args.config, state=args.state)
    if cfg.sort not in (None, "Newest"):
        raise ConfigError("follow walks the feed newest first: drop --sort or give --sort Newest")
    own = follow_values(args, read_toml(Path(args.config))[1] if args.config else {})
    settings = FollowSettings(interval=own.interval, passes=own.passes, compact_above=own.compact_above)
    join_ray(cfg)
    return run_loop(_follow(dataclasses.replace(cfg, sort="Newest"), settings, own.metrics_port, own.metrics_addr))


async def _follow(cfg: CrawlConfig, settings: FollowSettings, metrics_port: int | None, metrics_addr: str) -> int:
    with log_file(cfg) as also:
        return await _serve(Follower(cfg, settings, sys.stderr, log_file=also), metrics_port, metrics_addr)


async def _serve(follower: Follower, metrics_port: int | None, metrics_addr: str) -> int:
    server = None
    if metrics_port is not None:
        try:
            server = metrics.serve(follower, metrics_port, metrics_addr)
        except OSError as e:
            raise ConfigError(f"--metrics-port {metrics_port}: cannot listen on {metrics_addr}: {e.strerror}") from None
        follower.log(f"metrics on http://{metrics_addr}:{server.server_port}/metrics")
    try:
        with handle_signals(follower.log, follower.request_stop, follower.force_exit):
            return await follower.run()
    finally:
        if server is not None:
            server.shutdown()
