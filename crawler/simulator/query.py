"""Parsing and validation of `/api/v1/images` query parameters into one frozen `Query`.

The endpoint and `Catalogue.expected` share this parser, so both apply exactly the same filters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

SORTS = ("Most Reactions", "Most Comments", "Most Collected", "Newest", "Oldest", "Random")
PERIODS = {"AllTime": 0, "Year": 365, "Month": 30, "Week": 7, "Day": 1}  # days back from the newest item
TYPES = ("image", "video", "audio")
# The base models the site knows: `baseModels` naming another answers 400, as CivitAI's does. Items are
# drawn from the first five (items.py); the rest exist but hold no image here.
BASE_MODELS = ("SDXL 1.0", "Pony", "SD 1.5", "Flux.1 D", "Illustrious", "SD 1.4", "SD 2.0", "SD 2.1", "SDXL Turbo",
               "SD 3.5", "Flux.1 S", "NoobAI", "Hunyuan Video", "Wan Video", "Other")
ALL_LEVELS = 31
# Legacy `nsfw` values -> browsing-level bitmask; `true` means R and above, not "everything".
_NSFW_LEVELS = {"none": 1, "soft": 3, "mature": 7, "x": 31, "true": 28, "false": 1}
_UINT = re.compile(r"[0-9]{1,18}")
MAX_LIMIT = 200
DEFAULT_LIMIT = 100


class QueryError(ValueError):
    """A parameter CivitAI would reject with HTTP 400."""


@dataclass(frozen=True, slots=True)
class Filters:
    """Everything that decides WHICH items a feed holds and in what order (not how many per page)."""

    sort: str = "Most Reactions"
    period: str = "AllTime"
    levels: int = 1
    username: str | None = None  # lower-cased
    user_id: int | None = None
    post_id: int | None = None
    model_id: int | None = None
    model_version_id: int | None = None
    image_id: int | None = None
    base_models: frozenset[str] | None = None
    media_type: str | None = None
    tag_ids: frozenset[int] | None = None  # `tags=ID,...`: any of them


@dataclass(frozen=True, slots=True)
class Query:
    filters: Filters
    limit: int = DEFAULT_LIMIT
    with_meta: bool = False
    cursor: str | None = None
    with_tags: bool = False


def parse_query(params: Mapping[str, str]) -> Query:
    """Validate `params` the way the API does; raises QueryError with a message fit for a 400 body."""
    limit = uint_param(params, "limit")
    if limit is None:
        limit = DEFAULT_LIMIT
    elif limit > MAX_LIMIT:
        raise QueryError(f"limit must be between 0 and {MAX_LIMIT}")
    sort = choice_param(params, "sort", SORTS, "Most Reactions")
    period = choice_param(params, "period", tuple(PERIODS), "AllTime")
    media_type = params.get("type")
    if media_type is not None and media_type not in TYPES:
        raise QueryError(f"type must be one of {', '.join(TYPES)}")
    base_models = params.get("baseModels")
    unknown = [b.strip() for b in (base_models or "").split(",") if b.strip() and b.strip() not in BASE_MODELS]
    if unknown:
        raise QueryError(f"baseModels: unknown base model {unknown[0]!r}")
    filters = Filters(
        sort=sort,
        period=period,
        levels=_levels(params),
        username=params["username"].lower() if params.get("username") else None,
        user_id=uint_param(params, "userId"),
        post_id=uint_param(params, "postId"),
        model_id=uint_param(params, "modelId"),
        model_version_id=uint_param(params, "modelVersionId"),
        image_id=uint_param(params, "imageId"),
        base_models=frozenset(b.strip() for b in base_models.split(",") if b.strip()) if base_models else None,
        media_type=media_type,
        tag_ids=_tag_ids(params.get("tags")),
    )
    with_meta = params.get("withMeta", "false").lower() in ("true", "1")
    with_tags = params.get("withTags", "false").lower() in ("true", "1")
    return Query(filters=filters, limit=limit, with_meta=with_meta, cursor=params.get("cursor"), with_tags=with_tags)


def _tag_ids(raw: str | None) -> frozenset[int] | None:
    if not raw:
        return None
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not all(_UINT.fullmatch(p) for p in parts):
        raise QueryError(f"tags must be comma-separated tag ids, got {raw!r}")
    return frozenset(int(p) for p in parts) or None


def uint_param(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not _UINT.fullmatch(raw):
        raise QueryError(f"{name} must be a non-negative integer, got {raw!r}")
    return int(raw)


def choice_param(params: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = params.get(name)
    if raw is None:
        return default
    for value in allowed:
        if value.lower() == raw.lower():
            return value
    raise QueryError(f"{name} must be one of {', '.join(allowed)}")


def _levels(params: Mapping[str, str]) -> int:
    """browsingLevel wins over nsfw; with neither, PG only (the default that surprises users)."""
    level = uint_param(params, "browsingLevel")
    if level is not None:
        if not 1 <= level <= ALL_LEVELS:
            raise QueryError(f"browsingLevel must be a bitmask within 1..{ALL_LEVELS}")
        return level
    nsfw = params.get("nsfw")
    if nsfw is None:
        return 1
    try:
        return _NSFW_LEVELS[nsfw.lower()]
    except KeyError:
        raise QueryError("nsfw must be one of None, Soft, Mature, X, true, false") from None
