"""Which fault, if any, a request meets: one seeded roll per request against the configured odds.

Also formats `Retry-After` the two ways servers send it (seconds, or an HTTP date).
"""

from __future__ import annotations

import math
import random
import time
from email.utils import formatdate

from crawler.simulator.config import API_FAULTS, CDN_FAULTS, FaultConfig


class FaultPicker:
    """Seeded per server, so a run with the same seed and request order meets the same faults."""

    __slots__ = ("_cfg", "_rng", "_api", "_cdn")

    def __init__(self, cfg: FaultConfig, seed: int) -> None:
        self._cfg = cfg
        self._rng = random.Random(f"{seed}:faults")
        self._api = _ladder(cfg, API_FAULTS, "api_")
        self._cdn = _ladder(cfg, CDN_FAULTS, "cdn_")

    def api(self) -> str | None:
        """One of 429, 503, 500, malformed, reset -- or None."""
        return self._pick(self._api)

    def cdn(self) -> str | None:
        """One of 429, 500, reset, truncate, stall, html -- or None."""
        return self._pick(self._cdn)

    def chance(self, probability: float) -> bool:
        return probability > 0.0 and self._rng.random() < probability

    def _pick(self, ladder: tuple[tuple[float, str], ...]) -> str | None:
        if not ladder:
            return None  # no roll at all: a fault-free server draws nothing from the generator
        roll = self._rng.random()
        for bound, name in ladder:
            if roll < bound:
                return name
        return None

    def retry_after(self) -> str:
        seconds = self._cfg.retry_after
        if self._cfg.retry_after_http_date:
            # HTTP dates have whole seconds; round up so the client never waits too little.
            return formatdate(math.ceil(time.time() + seconds), usegmt=True)
        return f"{seconds:g}"


def _ladder(cfg: FaultConfig, names: tuple[str, ...], prefix: str) -> tuple[tuple[float, str], ...]:
    """Cumulative bounds, so each fault fires with exactly its own probability."""
    bound = 0.0
    ladder = []
    for name in names:
        p = getattr(cfg, name)
        if p > 0.0:
            bound += p
            ladder.append((bound, name.removeprefix(prefix)))
    return tuple(ladder)
