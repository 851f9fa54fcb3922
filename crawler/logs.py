"""Log lines for people (`HH:MM:SS message`) or machines (one JSON object per line).

Context such as the follow pass number is attached to every line; callers pass only what they know.
No caller ever hands it a URL unredacted or the API key.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import orjson


class Logger:
    __slots__ = ("stream", "json", "context")

    def __init__(self, stream: TextIO = sys.stderr, fmt: str = "text", **context: Any) -> None:
        self.stream = stream
        self.json = fmt == "json"
        self.context = context

    def info(self, message: str, **fields: Any) -> None:
        if self.json:
            record = {"t": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "msg": message, **self.context, **fields}
            self.stream.write(orjson.dumps(record, default=str).decode() + "\n")
        else:
            prefix = "".join(f"[{k} {v}] " for k, v in self.context.items())
            self.stream.write(f"{time.strftime('%H:%M:%S')} {prefix}{message}\n")
        self.stream.flush()
