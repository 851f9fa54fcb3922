"""One reading of an API item, whatever its source or age: the fields filters and exports rely on.

Feed items carry `nsfwLevel` as a string ("None".."X"), model images as a number (0..4 in old data,
the browsing-level bitmask 1/2/4/8/16 in new); any field may be missing or of the wrong type, so
every accessor returns None rather than raising. The raw item is never modified.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

NSFW_LEVELS = ("None", "Soft", "Mature", "X")
_RANK = {name.lower(): rank for rank, name in enumerate(NSFW_LEVELS)}
REACTIONS = ("likeCount", "heartCount", "laughCount", "cryCount")
# meta keys vary by generator ("Clip skip" with a space, "cfgScale"...): the first present wins.
META_FIELDS = {
    "prompt": ("prompt",),
    "negative_prompt": ("negativePrompt", "negative_prompt"),
    "seed": ("seed",),
    "steps": ("steps",),
    "sampler": ("sampler",),
    "cfg_scale": ("cfgScale", "cfg_scale", "CFG scale"),
    "clip_skip": ("clipSkip", "Clip skip", "clip_skip"),
    "size": ("Size", "size"),
}


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value.strip())
    return None


def nsfw_rank(item: dict[str, Any]) -> int | None:
    """0 None (PG), 1 Soft (PG-13), 2 Mature (R), 3 X (X and XXX); None when unknown."""
    level = item.get("nsfwLevel")
    if isinstance(level, str):
        return _RANK.get(level.strip().lower())
    number = _int(level)
    if number is None or number < 0:
        browsing = _int(item.get("browsingLevel"))
        return nsfw_rank({"nsfwLevel": browsing}) if browsing is not None and level is None else None
    if number == 0:
        return 0
    # Bitmask values (1 PG, 2 PG-13, 4 R, 8 X, 16 XXX): the highest level set wins.
    top = number.bit_length() - 1
    return min(top, 3)


def nsfw_name(item: dict[str, Any]) -> str | None:
    rank = nsfw_rank(item)
    return None if rank is None else NSFW_LEVELS[rank]


def reactions(item: dict[str, Any]) -> int:
    stats = item.get("stats")
    if not isinstance(stats, dict):
        return 0
    return sum(_int(stats.get(name)) or 0 for name in REACTIONS)


def created_at(item: dict[str, Any]) -> datetime | None:
    value = item.get("createdAt")
    if not isinstance(value, str):
        return None
    return parse_time(value)


def parse_time(value: str) -> datetime | None:
    """ISO-8601 date or date-time; naive values are taken as UTC."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def meta(item: dict[str, Any]) -> dict[str, Any] | None:
    """The generation metadata as one flat object: null, `{}`, flat, or unwrapped from `{"id": N, "meta": ...}`."""
    value = item.get("meta")
    # Without flatMeta newer API versions wrap it as {id, meta}, the inner one maybe null.
    if isinstance(value, dict) and "prompt" not in value:
        inner = value.get("meta")
        if isinstance(inner, dict) or (inner is None and set(value) == {"id", "meta"}):
            value = inner
    return value if isinstance(value, dict) else None


def prompt(item: dict[str, Any]) -> str | None:
    found = meta(item)
    text = found.get("prompt") if found else None
    return text if isinstance(text, str) and text.strip() else None


def meta_fields(item: dict[str, Any]) -> dict[str, Any]:
    found = meta(item) or {}
    out: dict[str, Any] = {}
    for name, keys in META_FIELDS.items():
        out[name] = next((found[k] for k in keys if k in found), None)
    return out


def username(item: dict[str, Any]) -> str | None:
    """The creator's name as text: an all-digit name once came back as a bare JSON number."""
    value = item.get("username")
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else None


def tags(item: dict[str, Any]) -> list[str]:
    """Tag names (`withTags=true`): `[{"id", "name"}, ...]` or plain strings; unreadable entries left out."""
    value = item.get("tags")
    if not isinstance(value, list):
        return []
    names = (t.get("name") if isinstance(t, dict) else t for t in value)
    return [n for n in names if isinstance(n, str) and n]


def integer(item: dict[str, Any], name: str) -> int | None:
    return _int(item.get(name))


def text(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value if isinstance(value, str) else None


def int_list(item: dict[str, Any], name: str) -> list[int]:
    value = item.get(name)
    if not isinstance(value, list):
        return []
    return [v for v in (_int(x) for x in value) if v is not None]
