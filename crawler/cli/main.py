"""The `civitai-mirror` command: one module per subcommand, dispatched from here.

Each command module offers `add_parser(subparsers)` (returning its parser) and `run(args) -> int`. Bad
input ends with exit code 2 and one readable line on stderr, never a traceback: the errors a command
may raise for it are caught here. Exit codes are those of `crawler.stops`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from crawler.cli import compact, config, crawl, export, follow, plan, sim, status, verify
from crawler.cli.parsing import PROG, Parser
from crawler.config.settings import ConfigError
from crawler.export.errors import ExportError
from crawler.serve import command as serve
from crawler.state.lock import LockBusy
from crawler.stops import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE
from crawler.store.errors import StoreError

# In the order `--help` lists them.
COMMANDS = (crawl, plan, follow, compact, config, status, verify, export, serve, sim)
# One line and exit 2: bad usage, a file that is not a mirror, a mirror in use, an unusable store behind --out.
USAGE_ERRORS = (ConfigError, ExportError, LockBusy, StoreError)


def version() -> str:
    """The installed distribution's version (pyproject.toml is the one place it is written)."""
    try:
        return metadata.version(PROG)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Mirror images and their generation metadata from CivitAI's public API, "
                    "politely and resumably.")
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    subparsers.required = True
    for command in COMMANDS:
        command.add_parser(subparsers).set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except USAGE_ERRORS as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`config show | head -1`): stop quietly, and keep Python's exit-time flush of
        # stdout from failing again with a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
