"""What every command's parser shares: usage errors as one line and exit 2, the mirror flags, sizes and durations.

A bad flag ends the process with `EXIT_USAGE` and one line on stderr (argparse's traceback-free path);
a bad size or duration is a `ConfigError`, which `main` prints the same way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TypeAlias

from crawler.config.quantities import DURATION_EXAMPLE, SIZE_EXAMPLE, parse_duration, parse_size
from crawler.config.settings import ConfigError
from crawler.state.manifest import MANIFEST_NAME
from crawler.stops import EXIT_USAGE

PROG = "civitai-mirror"
STATE_HELP = ("local directory for the manifest and lock (default: --out itself; required when --out is an object "
              "store URL)")
STORAGE_OPTION_HELP = "an fsspec option for an object store --out (repeatable), as for crawl"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(EXIT_USAGE)


# What `add_subparsers` returns; argparse gives it no public name (and it is generic only in the stubs).
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_mirror(parser: argparse.ArgumentParser, out_help: str = "mirror directory or object store URL") -> None:
    """--out (required) and --state: which mirror a command works on."""
    parser.add_argument("--out", required=True, metavar="DIR|URL", help=out_help)
    parser.add_argument("--state", metavar="DIR", help=STATE_HELP)


def duration(text: str, flag: str) -> float:
    """Seconds in `text` such as 90s, 10m, 2h, 1d (a bare number is seconds); more than zero."""
    return _positive(parse_duration(text, flag), text, flag, DURATION_EXAMPLE)


def size(text: str, flag: str) -> int:
    """Bytes in `text` such as 512M, 500MB, 2GiB (a bare number is bytes; see `config.quantities`)."""
    return int(_positive(parse_size(text, flag), text, flag, SIZE_EXAMPLE))


def _positive(value: float, text: str, flag: str, example: str) -> float:
    if value <= 0:
        raise ConfigError(f"{flag}: {text!r} must be more than zero ({example})")
    return value


def require_mirror(root: Path) -> None:
    """`root` holds a manifest, or a ConfigError saying what it is instead."""
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory")
    if not (root / MANIFEST_NAME).exists():
        raise ConfigError(f"{root} has no {MANIFEST_NAME}: not a mirror (yet)")
