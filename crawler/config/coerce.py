"""A value from a flag, a TOML file or a plan as an option's type, checked against its declaration.

Fails with one `ConfigError` line naming where the value came from (`--limit`, `config file c.toml: key 'limit'`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crawler.config.options import ConfigError, Option
from crawler.config.quantities import parse_duration, parse_size


def coerce(o: Option, value: Any, where: str) -> Any:
    """`value` (a CLI string or a TOML value) as the option's type, or a ConfigError naming `where`."""
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{where}: {why}")

    if value is None:
        return None
    if o.unit == "size" and isinstance(value, str):
        value = parse_size(value, where)
    elif o.unit == "duration" and isinstance(value, str):
        value = parse_duration(value, where)
    if o.kind is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise bad("expected a list of non-empty strings")
        return tuple(value)
    if o.kind is bool:
        if isinstance(value, bool):
            return value
        raise bad(f"expected true or false, got {value!r}")
    if o.kind in (int, float):
        value = _number(o.kind, value, bad)
    elif o.kind is str and (not isinstance(value, str) or not value.strip()):
        raise bad(f"expected a non-empty string, got {value!r}")
    if o.choices is not None and value not in o.choices:
        raise bad(f"{value!r} is not one of: {', '.join(o.choices)}")
    if o.minimum is not None and value < o.minimum:
        raise bad(f"must be at least {o.minimum:g}, got {value}")
    if o.maximum is not None and value > o.maximum:
        raise bad(f"must be at most {o.maximum:g}, got {value}")
    return value


_NUMBER_NAMES = {int: "an integer", float: "a number"}


def _number(kind: type, value: Any, bad: Callable[[str], ConfigError]) -> int | float:
    """An int or float option's value; a CLI string is parsed (ints may use `_` between digits)."""
    wrong = bad(f"expected {_NUMBER_NAMES[kind]}, got {value!r}")
    if isinstance(value, bool):
        raise wrong
    if isinstance(value, str):
        try:
            value = int(value.strip().replace("_", ""), 10) if kind is int else float(value)
        except ValueError:
            raise wrong from None
    if kind is int:
        if not isinstance(value, int):
            raise wrong
        return value
    if not isinstance(value, (int, float)) or value != value:
        raise wrong
    return float(value)
