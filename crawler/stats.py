"""The crawl's statistics in one place: what became of the items it listed and downloaded."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class CrawlStats:
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    failed: int = 0
    gone: int = 0
    bytes: int = 0
    skipped_done: int = 0  # already in the mirror
    duplicates: int = 0  # seen earlier in this run (pages overlap)
    invalid: int = 0  # items the API sent that cannot be mirrored
    retried_failures: int = 0  # earlier failures queued again
    failures: Counter[str] = field(default_factory=Counter)
    filtered: Counter[str] = field(default_factory=Counter)  # skipped by a dataset filter, by reason

    def elapsed(self) -> float:
        return max(1e-9, time.monotonic() - self.started)

    def as_dict(self) -> dict[str, object]:
        return {"done": self.done, "failed": self.failed, "gone": self.gone, "bytes": self.bytes,
                "skipped_done": self.skipped_done, "duplicates": self.duplicates, "invalid": self.invalid,
                "retried_failures": self.retried_failures, "failures": dict(self.failures),
                "filtered": dict(self.filtered),
                "seconds": round(self.elapsed(), 3)}
