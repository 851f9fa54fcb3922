"""Parsing and validation of `/api/v1/models` query parameters into one frozen `ModelQuery`.

The endpoint and `Catalogue.expected_models` share it, so both list exactly the same models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from crawler.simulator.models import MODEL_SORTS, MODEL_TYPES, ModelFilters
from crawler.simulator.query import ALL_LEVELS, PERIODS, QueryError, choice_param, uint_param

MAX_LIMIT = 100
DEFAULT_LIMIT = 100


@dataclass(frozen=True, slots=True)
class ModelQuery:
    filters: ModelFilters
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


def parse_model_query(params: Mapping[str, str]) -> ModelQuery:
    """Raises QueryError with a message fit for a 400 body. `types` may repeat (a MultiDict) or be a comma list."""
    limit = uint_param(params, "limit")
    if limit is None:
        limit = DEFAULT_LIMIT
    elif not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be between 1 and {MAX_LIMIT}")
    nsfw = params.get("nsfw", "false").lower()
    if nsfw not in ("true", "false"):
        raise QueryError("nsfw must be true or false")
    filters = ModelFilters(
        query=_lower(params, "query"),
        tag=_lower(params, "tag"),
        username=_lower(params, "username"),
        types=_types(params),
        sort=choice_param(params, "sort", MODEL_SORTS, MODEL_SORTS[0]),
        period=choice_param(params, "period", tuple(PERIODS), "AllTime"),
        levels=ALL_LEVELS if nsfw == "true" else 1,
    )
    return ModelQuery(filters=filters, limit=limit, cursor=params.get("cursor"))


def _lower(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    return value.lower() if value else None


def _types(params: Mapping[str, str]) -> frozenset[str] | None:
    getall = getattr(params, "getall", None)
    raw = getall("types", []) if getall is not None else [params["types"]] if "types" in params else []
    wanted: set[str] = set()
    for value in (v.strip() for entry in raw for v in entry.split(",")):
        if not value:
            continue
        match = next((t for t in MODEL_TYPES if t.lower() == value.lower()), None)
        if match is None:
            raise QueryError(f"types must be among {', '.join(MODEL_TYPES)}")
        wanted.add(match)
    return frozenset(wanted) if wanted else None
