"""Sizes and durations as people type them, read the same way by every option that takes one.

    parse_size("512M", "--max-bytes") == 512 * 2**20     parse_duration("10m", "--interval") == 600.0

Sizes: a bare number is bytes; KB/MB/GB/TB are decimal (1000), KiB/MiB/GiB/TiB binary (1024), and a
single letter K/M/G/T is binary too, as curl, dd and `ls -h` read it. Case and a space before the unit
do not matter. Durations: a bare number is seconds; s, m, h, d. Anything else or a negative is a
`ConfigError` naming the flag (or file key) and giving an example; bounds are the option's own.
"""

from __future__ import annotations

import re
from typing import Any

from crawler.config.options import ConfigError, Option

_SIZE_UNITS: dict[str, float] = {"": 1, "b": 1,
                                 "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
                                 "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
                                 "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_DURATION_UNITS: dict[str, float] = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_QUANTITY = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*")
SIZE_EXAMPLE = "a size such as 512M, 500MB or 2GiB"
DURATION_EXAMPLE = "a duration such as 90s, 10m, 2h or 1d"


def parse_size(text: str | int, where: str) -> int:
    """Bytes in `text` (an int is taken as bytes)."""
    return int(_parse(text, where, _SIZE_UNITS, SIZE_EXAMPLE))


def parse_duration(text: str | int | float, where: str) -> float:
    """Seconds in `text` (a number is taken as seconds)."""
    return _parse(text, where, _DURATION_UNITS, DURATION_EXAMPLE)


def _parse(text: str | int | float, where: str, units: dict[str, float], example: str) -> float:
    if isinstance(text, bool):
        raise ConfigError(f"{where}: expected {example}, got {text!r}")
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        match = _QUANTITY.fullmatch(text.lower())
        if match is None or match.group(2) not in units:
            raise ConfigError(f"{where}: {text!r} is not {example}")
        value, unit = float(match.group(1)), match.group(2)
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{where}: {text!r} is not {example}")
    return value * units[unit]


def show_size(n: int) -> str:
    """`n` bytes as typed back: 536870912 -> 512M, 1000000 -> 1MB, 1500 -> 1500."""
    exact = [(n // factor, unit) for unit, factor in (("T", 2**40), ("G", 2**30), ("M", 2**20), ("K", 2**10),
                                                     ("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3))
             if n >= factor and n % factor == 0]
    if not exact:
        return str(n)
    number, unit = min(exact)  # the shortest spelling: 256MB rather than 250000K
    return f"{number}{unit}"


def show_duration(seconds: float) -> str:
    """Seconds as typed back: 600 -> 10m, 5.0 -> 5s, 0.5 -> 0.5s."""
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= factor and seconds % factor == 0:
            return f"{int(seconds // factor)}{unit}"
    return f"{seconds:g}s"


def as_typed(o: Option, value: Any) -> str:
    """An option's value as the user would type it: sizes and durations with their unit."""
    if o.unit == "size" and isinstance(value, int) and not isinstance(value, bool):
        return show_size(value)
    if o.unit == "duration" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return show_duration(value)
    return str(value)
