"""The crawl's settings, as other packages import them: one frozen `CrawlConfig` built from defaults, a TOML
file, the environment and flags.

This module only gathers the public names; each option is declared once, as a field of `CrawlConfig`
(`crawl_config.py`), and its flag (`flags.py`), TOML key (`sources.py`), parsing (`coerce.py`) and the
cross-option checks (`validate.py`) derive from that. Every problem is one readable `ConfigError` line.
"""

from __future__ import annotations

from crawler.config.coerce import coerce
from crawler.config.crawl_config import BY_NAME, IMAGES, OPTIONS, CrawlConfig, Endpoint
from crawler.config.flags import add_arguments, given
from crawler.config.options import (
    API_KEY_ENV,
    DEFAULT_API_BASE,
    MODEL_SORTS,
    NSFW,
    PERIODS,
    SORTS,
    TYPES,
    USER_AGENT,
    ConfigError,
    Option,
)
from crawler.config.sources import build, build_with_sources, describe, load_toml, state_root
from crawler.config.validate import check_whole

__all__ = [
    "API_KEY_ENV", "BY_NAME", "DEFAULT_API_BASE", "IMAGES", "MODEL_SORTS", "NSFW", "OPTIONS", "PERIODS", "SORTS",
    "TYPES", "USER_AGENT", "ConfigError", "CrawlConfig", "Endpoint", "Option", "add_arguments", "build",
    "build_with_sources", "check_whole", "coerce", "describe", "given", "load_toml", "state_root",
]
