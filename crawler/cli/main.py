"""The `civitai-mirror` command: one module per subcommand, dispatched from here.

Each command module offers `add_parser(subparsers)` (returning its parser) and `run(args) -> int`. Only
the module of the command given is imported (with `--help` or no command, all of them): every module
together took ~0.4 s of CPU to import, which a crawl paid on every start and `status` waited for. Bad
input ends with exit code 2 and one readable line on stderr, never a traceback: the errors a command
may raise for it are caught here. Exit codes are those of `crawler.stops`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from crawler.cli.parsing import PROG, Parser
from crawler.config.settings import ConfigError
from crawler.export.errors import ExportError
from crawler.state.lock import LockBusy
from crawler.stops import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE
from crawler.store.errors import StoreError

# Each command and the module that holds it, in the order `--help` lists them.
COMMANDS = {
    "crawl": "crawler.cli.crawl", "plan": "crawler.cli.plan", "follow": "crawler.cli.follow",
    "compact": "crawler.cli.compact", "config": "crawler.cli.config", "status": "crawler.cli.status",
    "verify": "crawler.cli.verify", "export": "crawler.cli.export", "serve": "crawler.serve.command",
    "sim": "crawler.cli.sim",
}
# One line and exit 2: bad usage, a file that is not a mirror, a mirror in use, an unusable store behind --out.
USAGE_ERRORS = (ConfigError, ExportError, LockBusy, StoreError)


def version() -> str:
    """The installed distribution's version (pyproject.toml is the one place it is written)."""
    from importlib import metadata  # here, not at the top: ~40 ms that only --version needs

    try:
        return metadata.version(PROG)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class _Version(argparse.Action):
    """argparse's `version` action, with the version looked up only when the flag is given."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        sys.stdout.write(f"{PROG} {version()}\n")
        parser.exit()


def command_module(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; given `command`, only that command's is complete, the others are bare names."""
    parser = Parser(prog=PROG, description="Mirror images and their generation metadata from CivitAI's public API, "
                    "politely and resumably.")
    parser.add_argument("--version", action=_Version, nargs=0, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                        help="show the program's version number and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    subparsers.required = True
    for name in COMMANDS:
        if command is None or name == command:
            module = command_module(name)
            module.add_parser(subparsers).set_defaults(run=module.run)
        else:  # never parsed nor listed: `--help` and an unknown command build everything
            subparsers.add_parser(name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # The top level has no option that takes a value, so the first word is the command.
    first = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(first if first in COMMANDS else None).parse_args(argv)
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
