"""`follow`'s own options (beside every crawl option), declared once like `CrawlConfig`'s: flag, TOML key, help.

    values = follow_values(args, config_file)   # flags over the file's keys over the defaults

A config file may hold these keys beside the crawl's (`interval = "30m"`); `crawl` ignores them. Bad
values are one `ConfigError` naming the flag or the file and key.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from crawler.config.coerce import coerce
from crawler.config.options import Option, option, options_of
from crawler.config.quantities import as_typed


@dataclass(frozen=True, slots=True)
class FollowOptions:
    interval: float = option(600.0, "time between passes, e.g. 90s, 10m, 2h (+-10%% jitter)", minimum=0.1,
                             metavar="DURATION", unit="duration")
    passes: int | None = option(None, "stop after N passes (default: run forever)", minimum=1, metavar="N")
    metrics_port: int | None = option(None, "serve Prometheus metrics on http://ADDR:PORT/metrics (0: any free port, "
                                      "printed at start)", minimum=0, maximum=65535, metavar="PORT")
    metrics_addr: str = option("127.0.0.1", "address for the metrics endpoint", metavar="ADDR")
    compact_above: int = option(256 * 10**6, "compact the manifest automatically once it is larger than SIZE and "
                                "mostly superseded records", minimum=1, metavar="SIZE", unit="size")


FOLLOW_OPTIONS: tuple[Option, ...] = options_of(FollowOptions)
FOLLOW_BY_NAME: dict[str, Option] = {o.name: o for o in FOLLOW_OPTIONS}


def add_follow_arguments(parser: argparse.ArgumentParser) -> None:
    """Each follow option as a flag defaulting to None, so only what the user typed overrides the file."""
    for o in FOLLOW_OPTIONS:
        shown = "" if o.default is None else f" (default: {as_typed(o, o.default)})"
        parser.add_argument(o.flag, dest=o.name, default=None, metavar=o.metavar, help=o.help + shown)


def follow_values(args: argparse.Namespace, from_file: dict[str, Any]) -> FollowOptions:
    """Defaults, then the file's follow keys (already coerced), then flags."""
    values = {o.name: o.default for o in FOLLOW_OPTIONS}
    values.update((k, v) for k, v in from_file.items() if k in FOLLOW_BY_NAME)
    for o in FOLLOW_OPTIONS:
        typed = getattr(args, o.name, None)
        if typed is not None:
            values[o.name] = coerce(o, typed, o.flag)
    return FollowOptions(**values)
