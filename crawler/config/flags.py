"""The options as command-line flags, derived from their declarations; and the flags' values read back.

Every flag defaults to None so that only what the user typed overrides the config file; bad values are
left to `coerce` (one `ConfigError` line naming the flag), not to argparse.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from crawler.config.crawl_config import OPTIONS
from crawler.config.options import Option
from crawler.config.quantities import as_typed


def add_arguments(parser: argparse.ArgumentParser, shown: Callable[[Option], bool] | None = None) -> None:
    """Every option as a flag whose default is None, so only what the user typed overrides the file.

    Options for which `shown` is false are accepted (one command line works for crawl and plan) but left
    out of --help, where they would mean nothing.
    """
    for o in OPTIONS:
        hidden = shown is not None and not shown(o)
        if o.kind is bool:
            positive, negative = o.bool_flags
            # (argparse cannot lay out the usage of a group whose every member is hidden: no group then.)
            group = parser if hidden else parser.add_mutually_exclusive_group()
            # Show the flag that changes the default; keep the other for scripts that spell it out.
            group.add_argument(positive, dest=o.name, action="store_const", const=True, default=None,
                               help=argparse.SUPPRESS if o.default or hidden else o.help)
            group.add_argument(negative, dest=o.name, action="store_const", const=False, default=None,
                               help=(o.off_help or f"do not {o.help}") if o.default and not hidden else argparse.SUPPRESS)
        elif o.kind is list:
            parser.add_argument(o.flag, dest=o.name, action="append", default=None, metavar=o.metavar,
                                help=argparse.SUPPRESS if hidden else o.help)
        else:
            shown_default = "" if o.default is None else f" (default: {as_typed(o, o.default)})"
            text = o.help + shown_default + (f"; one of: {', '.join(o.choices)}" if o.choices else "")
            parser.add_argument(o.flag, dest=o.name, default=None, metavar=o.metavar,
                                help=argparse.SUPPRESS if hidden else text)


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The option values the user typed (None for the rest), by option name, for `sources.build`."""
    return {o.name: getattr(args, o.name, None) for o in OPTIONS}
