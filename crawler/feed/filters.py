"""The dataset filters: which listed images a crawl takes, decided per item before any download.

Each rule names its reason, so skipped items are counted by why they were skipped. Items whose field
is missing or unreadable are skipped by the rule that needs the field (a dataset asked for prompts
or a minimum size should not silently get images of unknown size).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crawler import normalise as N
from crawler.config.settings import CrawlConfig


@dataclass(frozen=True, slots=True)
class ItemFilter:
    require_meta: bool = False
    min_width: int | None = None
    min_height: int | None = None
    min_reactions: int | None = None
    max_nsfw_rank: int | None = None
    exclude_users: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def from_config(cls, cfg: CrawlConfig) -> ItemFilter:
        return cls(
            require_meta=cfg.require_meta, min_width=cfg.min_width, min_height=cfg.min_height,
            min_reactions=cfg.min_reactions,
            max_nsfw_rank=None if cfg.max_nsfw_level is None else N.NSFW_LEVELS.index(cfg.max_nsfw_level),
            exclude_users=frozenset(u.lower() for u in cfg.exclude_user),
            since=N.parse_time(cfg.since) if cfg.since else None, until=N.parse_time(cfg.until) if cfg.until else None,
        )

    @property
    def active(self) -> bool:
        return self != ItemFilter()

    def reason(self, item: dict[str, Any]) -> str | None:
        """Why `item` is skipped, or None to take it."""
        if self.require_meta and N.prompt(item) is None:
            return "no-prompt"
        if self.min_width is not None and (N.integer(item, "width") or 0) < self.min_width:
            return "too-narrow"
        if self.min_height is not None and (N.integer(item, "height") or 0) < self.min_height:
            return "too-short"
        if self.min_reactions is not None and N.reactions(item) < self.min_reactions:
            return "few-reactions"
        if self.max_nsfw_rank is not None:
            rank = N.nsfw_rank(item)
            if rank is None or rank > self.max_nsfw_rank:
                return "nsfw-level"
        if self.exclude_users and (N.username(item) or "").lower() in self.exclude_users:
            return "excluded-user"
        if self.since is not None or self.until is not None:
            when = N.created_at(item)
            if when is None:
                return "no-date"
            if self.since is not None and when < self.since:
                return "before-since"
            if self.until is not None and when >= self.until:
                return "after-until"
        return None

    def past_since(self, items: list[Any]) -> bool:
        """On a newest-first feed: the page's last dated item is older than --since, so nothing after is wanted."""
        if self.since is None:
            return False
        for item in reversed(items):
            when = N.created_at(item) if isinstance(item, dict) else None
            if when is not None:
                return when < self.since
        return False
