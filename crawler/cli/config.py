"""`civitai-mirror config show`: every setting's effective value and where it came from.

Sources: default, file, environment, flag. The API key is shown only as set/unset, storage options
only by key. A bad flag or file is exit 2 with one line, as for crawl.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from crawler.cli.parsing import Parser, Subparsers
from crawler.config.quantities import as_typed
from crawler.config.settings import BY_NAME, add_arguments, build_with_sources, describe, given
from crawler.stops import EXIT_OK


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "config", help="show the effective settings and where each came from",
        description="Inspect the settings a crawl would use.")
    actions = parser.add_subparsers(dest="config_command", metavar="ACTION", parser_class=Parser)
    actions.required = True
    show = actions.add_parser("show", help="print every setting with its source: default, file, environment, flag",
                              description="Print every setting a crawl with these flags would use, with where it came "
                              "from: default, file, environment or flag. The API key is shown only as set or unset, "
                              "storage options only by key.")
    show.add_argument("--out", metavar="DIR|URL", help="mirror directory or object store URL (only shown; default: .)")
    show.add_argument("--state", metavar="DIR", help="directory for the manifest and lock (only shown; default: --out)")
    show.add_argument("--config", metavar="FILE", help="TOML file of settings")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    add_arguments(show)
    return parser


def run(args: argparse.Namespace) -> int:
    cfg, sources = build_with_sources(args.out or ".", given(args), args.config, state=args.state)
    # Where the mirror is comes first: shown as given, though no other setting depends on it.
    described = {"out": cfg.out, "state": str(cfg.state), **describe(cfg)}
    sources.update(out="flag" if args.out else "default", state="flag" if args.state else "default (--out)")
    if args.json:
        data = {name: {"value": described[name], "source": sources.get(name, "default")} for name in described}
        sys.stdout.write(orjson.dumps(data).decode() + "\n")
        return EXIT_OK
    width = max(len(name) for name in described)
    for name, value in described.items():
        print(f"{name:<{width}}  {plain(name, value):<40}  ({sources.get(name, 'default')})")
    return EXIT_OK


def plain(name: str, value: Any) -> str:
    """A setting as a person types it (TOML-like), never a Python repr: true, 512M, SDXL 1.0, PG, (none)."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "(none)"
    o = BY_NAME.get(name)
    return as_typed(o, value) if o is not None else str(value)
