"""Log lines for people (`HH:MM:SS message`) or machines (one JSON object per line).

Context such as the follow pass number is attached to every line; callers pass only what they know.
No caller ever hands it a URL unredacted or the API key. `plain` and `counts` turn the mappings a line
cites into words (`sort=Newest, browsingLevel=31`; `http-500: 68, connection: 2`), never Python reprs.
`also` is a second stream (`--log-file`) that gets every line too, in the same format.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import orjson


class Logger:
    __slots__ = ("stream", "json", "context", "also")

    def __init__(self, stream: TextIO = sys.stderr, fmt: str = "text", also: TextIO | None = None,
                 **context: Any) -> None:
        self.stream = stream
        self.json = fmt == "json"
        self.context = context
        self.also = also

    def info(self, message: str, **fields: Any) -> None:
        if self.json:
            record = {"t": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "msg": message, **self.context, **fields}
            text = orjson.dumps(record, default=str).decode() + "\n"
        else:
            prefix = "".join(f"[{k} {v}] " for k, v in self.context.items())
            text = f"{time.strftime('%H:%M:%S')} {prefix}{message}\n"
        self.stream.write(text)
        self.stream.flush()
        if self.also is not None:
            self.also.write(text)
            self.also.flush()


def plain(mapping: Mapping[str, Any]) -> str:
    """`{'sort': 'Newest', 'baseModels': ['SDXL 1.0']}` as `sort=Newest, baseModels=SDXL 1.0`; `everything` if empty."""
    parts = []
    for key, value in mapping.items():
        if isinstance(value, (list, tuple)):
            value = "+".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        parts.append(f"{key}={value}")
    return ", ".join(parts) or "everything"


def counts(counter: Mapping[str, int], most: int = 5) -> str:
    """`{'http-500': 68, 'connection': 2}` as `http-500: 68, connection: 2` (largest first; `and N more`)."""
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))
    shown = ", ".join(f"{key or 'unknown'}: {n}" for key, n in ranked[:most])
    return shown + (f" and {len(ranked) - most} more" if len(ranked) > most else "")


def clock(seconds: float) -> str:
    """Elapsed or remaining time as 45s, 12m03s, 3h07m."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    if hours:
        return f"{hours}h{rest // 60:02d}m"
    return f"{rest // 60}m{rest % 60:02d}s" if rest >= 60 else f"{rest}s"
