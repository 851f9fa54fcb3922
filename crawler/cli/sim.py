"""`civitai-mirror sim`: run the CivitAI simulator on 127.0.0.1 (for tests and demos); its flags are its own."""

from __future__ import annotations

import argparse

from crawler.cli.parsing import Subparsers
from crawler.simulator import cli as sim_cli

DESCRIPTION = ("Serve a simulated CivitAI (API and image CDN) on a loopback address until SIGINT/SIGTERM, with "
               "faults injected at the rates given; point crawl at it with --api-base.")


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sim", help="run the CivitAI simulator on 127.0.0.1 (for tests and demos)", description=DESCRIPTION)
    sim_cli.add_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    return sim_cli.run(args)
