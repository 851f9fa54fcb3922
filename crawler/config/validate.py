"""Checks across options (one value alone is checked by `coerce`): contradictions and source-specific flags.

`check_whole` raises one `ConfigError` for the first problem found, phrased with the flags the user typed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from crawler import normalise
from crawler.config.crawl_config import CrawlConfig
from crawler.config.options import MODEL_SORTS, SORTS, ConfigError


def check_whole(cfg: CrawlConfig) -> None:
    try:
        cfg.storage_options()
    except ValueError as e:
        raise ConfigError(f"--storage-option: {e}") from None
    if cfg.storage_option and not cfg.remote:
        raise ConfigError("--storage-option only applies when --out is an object store URL (s3://bucket/prefix, ...)")
    if cfg.ray_address and cfg.executor != "ray":
        raise ConfigError("--ray-address only applies with --executor ray")
    if cfg.width is not None and cfg.original:
        raise ConfigError("--width and --original contradict each other (original=true clears the size); give one")
    parts = urlsplit(cfg.api_base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--api-base must be an http(s) URL, got {cfg.api_base!r}")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigError("--api-base must be a plain URL without query, fragment or credentials")
    if cfg.backoff_max < cfg.backoff_base:
        raise ConfigError("backoff_max must be at least backoff_base")
    _check_dates(cfg)
    if cfg.source == "images":
        _check_images(cfg)
    else:
        _check_models(cfg)


def _check_dates(cfg: CrawlConfig) -> None:
    for name in ("since", "until"):
        value = getattr(cfg, name)
        if value is not None and normalise.parse_time(value) is None:
            raise ConfigError(f"--{name}: {value!r} is not an ISO date or date-time (e.g. 2025-01-31 or "
                              "2025-01-31T12:00:00Z)")
    if cfg.since and cfg.until and normalise.parse_time(cfg.since) >= normalise.parse_time(cfg.until):  # type: ignore[operator]
        raise ConfigError("--since must be before --until")


def _check_images(cfg: CrawlConfig) -> None:
    for name in ("query", "tag", "types"):
        if getattr(cfg, name):
            raise ConfigError(f"--{name} only applies to --source models")
    if cfg.sort in MODEL_SORTS:
        raise ConfigError(f"--sort {cfg.sort!r} is a models sort; for images one of: {', '.join(SORTS)}")


def _check_models(cfg: CrawlConfig) -> None:
    if cfg.sort not in (None, "Newest", *MODEL_SORTS):
        raise ConfigError(f"--sort {cfg.sort!r} is not a models sort; one of: Highest Rated, Most Downloaded, Newest")
    if cfg.limit > 100:
        raise ConfigError("--limit for --source models is at most 100")
    if cfg.browsing_level is not None or cfg.type or cfg.base_model or cfg.user_id or cfg.post_id:
        raise ConfigError("--browsing-level, --type, --base-model, --user-id and --post-id filter the /images feed; "
                          "for model images use --nsfw true (every level), --query, --tag, --types, --username")
