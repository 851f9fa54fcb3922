"""What an option is: declared once as a config dataclass field, everything else derived from it.

`option(default, help, ...)` is the field declaration; `options_of(cls)` reads the fields back as
`Option`s whose flag, TOML key, kind, default and help are what argparse, the TOML loader and the
validator use, so they cannot disagree. A field without `option()` metadata is not an option.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

SORTS = ("Most Reactions", "Most Comments", "Most Collected", "Newest", "Oldest", "Random")
MODEL_SORTS = ("Highest Rated", "Most Downloaded")
PERIODS = ("AllTime", "Year", "Month", "Week", "Day")
NSFW = ("None", "Soft", "Mature", "X", "true", "false")
NSFW_LEVELS = ("None", "Soft", "Mature", "X")
TYPES = ("image", "video", "audio")
DEFAULT_API_BASE = "https://civitai.com/api/v1"
USER_AGENT = "civitai-mirror/0.1 (+https://github.com/civitai-mirror/civitai-mirror)"
API_KEY_ENV = "CIVITAI_API_KEY"

_SPEC = "crawler.option"  # the metadata key under which a field's declaration is kept


class ConfigError(ValueError):
    """A bad flag, file or value; the message is the one line the user sees."""


@dataclass(frozen=True, slots=True)
class _Spec:
    help: str
    query: bool
    identity: bool
    choices: tuple[str, ...] | None
    minimum: float | None
    maximum: float | None
    metavar: str | None
    off_help: str | None
    flags: tuple[str, str] | None
    unit: str | None


def option(default: Any, help: str, *, query: bool = False, identity: bool = False,
           choices: tuple[str, ...] | None = None, minimum: float | None = None, maximum: float | None = None,
           metavar: str | None = None, off_help: str | None = None, flags: tuple[str, str] | None = None,
           unit: str | None = None) -> Any:
    """Declare a config field as an option.

    query: sent to the API, part of the query identity. identity: not sent, but changes which images a
    crawl takes (a filter), so also part of the identity. off_help: for a boolean on by default, what its
    --no- flag does. flags: a boolean's (on, off) flags when not --NAME / --no-NAME. unit: "size" or
    "duration", read by `quantities` (512M, 10m) from a flag or file as well as a plain number.
    """
    spec = _Spec(help, query, identity, choices, minimum, maximum, metavar, off_help, flags, unit)
    return dataclasses.field(default=default, metadata={_SPEC: spec})


@dataclass(frozen=True, slots=True)
class Option:
    """One option as every consumer sees it; built by `options_of`, never by hand."""

    name: str
    kind: type  # int, float, str, bool or list (of str; the field holds a tuple)
    default: Any
    help: str
    query: bool = False
    identity: bool = False
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    metavar: str | None = None
    off_help: str | None = None
    flags: tuple[str, str] | None = None
    unit: str | None = None  # "size" (bytes) or "duration" (seconds): read by `quantities`

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def toml_key(self) -> str:
        """The key in a config file: the flag without its dashes, `-` as `_` (the name)."""
        return self.flag[2:].replace("-", "_")

    @property
    def bool_flags(self) -> tuple[str, str]:
        """A boolean's (on, off) flags."""
        return self.flags or (self.flag, "--no-" + self.flag[2:])

    @property
    def off_key(self) -> str | None:
        """A boolean's off flag as a config file key (`no_meta = true` as `--no-meta`); None for the rest."""
        return self.bool_flags[1][2:].replace("-", "_") if self.kind is bool else None


def options_of(cls: type) -> tuple[Option, ...]:
    """The options declared on a dataclass, in declaration order; the kind comes from the annotation."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_SPEC)
        if spec is None:
            continue
        if spec.metavar is None and hints[f.name] is not bool:
            raise TypeError(f"option {f.name}: give a metavar (a word saying what the value is)")
        found.append(Option(f.name, _kind(hints[f.name], f.name), f.default, spec.help, spec.query, spec.identity,
                            spec.choices, spec.minimum, spec.maximum, spec.metavar, spec.off_help, spec.flags,
                            spec.unit))
    return tuple(found)


def _kind(hint: Any, name: str) -> type:
    """`int | None` -> int, `tuple[str, ...]` -> list; anything else is a declaration error."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] if isinstance(hint, types.UnionType) else [hint]
    if len(args) == 1:
        base = typing.get_origin(args[0]) or args[0]
        if base is tuple:
            return list
        if base in (int, float, str, bool):
            return base  # type: ignore[no-any-return]
    raise TypeError(f"option {name}: unsupported annotation {hint!r}")
