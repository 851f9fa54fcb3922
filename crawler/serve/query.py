"""Gallery search: URL parameters -> a validated `Query` -> one page of image keys, by keyset pagination.

A page is `LIMIT n` rows after the previous page's last (sort value, row number), read through an
index on that pair, so page 10 000 costs what page 1 costs; OFFSET would scan every skipped row, and
the mirror grows while someone pages, which OFFSET turns into repeated or skipped images. The cursor
is opaque to users (`after=` in links). A bad parameter raises `BadQuery` with one line for a 400.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import urlencode

from crawler import normalise as N

SORTS = {"newest": ("created", "DESC"), "oldest": ("created", "ASC"), "reactions": ("reactions", "DESC")}
TYPES = ("image", "video")
EXCLUDED = ("show", "hide", "only")
MAX_LIMIT = 200
_LEVELS = {name.lower(): rank for rank, name in enumerate(N.NSFW_LEVELS)}
_WORD = re.compile(r"\w+", re.UNICODE)


class BadQuery(ValueError):
    """One line saying which parameter is wrong and what it accepts."""


@dataclass(frozen=True, slots=True)
class Query:
    q: str = ""
    levels: tuple[int, ...] = ()
    type: str = ""
    base_model: str = ""
    min_width: int = 0
    min_height: int = 0
    since: date | None = None
    until: date | None = None
    min_reactions: int = 0
    sort: str = "newest"
    excluded: str = "show"
    after: tuple[float, int] | None = None
    limit: int = 60

    def params(self, **changes: Any) -> str:
        """This query as URL parameters (defaults left out), with `changes` applied."""
        query = replace(self, **changes)
        pairs: list[tuple[str, str]] = []
        if query.q:
            pairs.append(("q", query.q))
        pairs += [("level", N.NSFW_LEVELS[rank]) for rank in query.levels if rank < len(N.NSFW_LEVELS)]
        for name, default in (("type", ""), ("base_model", ""), ("min_width", 0), ("min_height", 0),
                              ("min_reactions", 0), ("sort", "newest"), ("excluded", "show"), ("limit", 60)):
            value = getattr(query, name)
            if value != default:
                pairs.append((name, str(value)))
        for name in ("since", "until"):
            value = getattr(query, name)
            if value is not None:
                pairs.append((name, value.isoformat()))
        if query.after is not None:
            pairs.append(("after", f"{query.after[0]!r}_{query.after[1]}"))
        return urlencode(pairs)


def parse(params: Mapping[str, str], multi: Mapping[str, list[str]] | None = None) -> Query:
    """`multi` holds every value of repeated parameters (`level=None&level=Soft`)."""
    known = {"q", "level", "type", "base_model", "min_width", "min_height", "since", "until", "min_reactions",
             "sort", "excluded", "after", "limit", "token"}
    for name in params:
        if name not in known:
            raise BadQuery(f"unknown parameter {name!r}; known: {', '.join(sorted(known - {'token'}))}")
    levels: list[int] = []
    for raw in (multi or {}).get("level") or ([params["level"]] if params.get("level") else []):
        for name in raw.split(","):
            if name.strip().lower() not in _LEVELS:
                raise BadQuery(f"level {name!r} is not one of {', '.join(N.NSFW_LEVELS)}")
            levels.append(_LEVELS[name.strip().lower()])
    return Query(
        q=params.get("q", "").strip()[:500],
        levels=tuple(sorted(set(levels))),
        type=_choice(params, "type", TYPES),
        base_model=params.get("base_model", "").strip()[:200],
        min_width=_int(params, "min_width", 0, 1_000_000),
        min_height=_int(params, "min_height", 0, 1_000_000),
        since=_date(params, "since"),
        until=_date(params, "until"),
        min_reactions=_int(params, "min_reactions", 0, 10**12),
        sort=_choice(params, "sort", tuple(SORTS)) or "newest",
        excluded=_choice(params, "excluded", EXCLUDED) or "show",
        after=_cursor(params.get("after")),
        limit=_int(params, "limit", 1, MAX_LIMIT, default=60),
    )


def _choice(params: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    """The value, or "" when not given (the caller's default)."""
    value = params.get(name, "")
    if value and value not in allowed:
        raise BadQuery(f"{name} must be one of {', '.join(a for a in allowed if a)}")
    return value


def _int(params: Mapping[str, str], name: str, low: int, high: int, default: int = 0) -> int:
    raw = params.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadQuery(f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def _date(params: Mapping[str, str], name: str) -> date | None:
    raw = params.get(name, "")
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise BadQuery(f"{name} must be a date as YYYY-MM-DD") from None


def _cursor(raw: str | None) -> tuple[float, int] | None:
    if not raw:
        return None
    value, _, n = raw.rpartition("_")
    try:
        return float(value), int(n)
    except ValueError:
        raise BadQuery("after is not a cursor from a previous page") from None


def fts_text(q: str) -> str:
    """Free text as an FTS5 expression: every word must appear, the last as a prefix (results while typing).

    Words are quoted, so FTS5 operators and punctuation typed by a user are never parsed as syntax."""
    words = _WORD.findall(q)
    if not words:
        return ""
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


@dataclass(frozen=True, slots=True)
class Found:
    n: int
    key: str
    at: int
    sort_value: float
    excluded: bool


def search(db: sqlite3.Connection, query: Query) -> tuple[list[Found], tuple[float, int] | None]:
    """One page of matches and the cursor of the next page (None on the last page)."""
    column, direction = SORTS[query.sort]
    where: list[str] = []
    args: list[Any] = []
    match = fts_text(query.q)
    if match:
        where.append("images.n IN (SELECT rowid FROM text WHERE text MATCH ?)")
        args.append(match)
    if query.levels:
        where.append(f"level IN ({','.join('?' * len(query.levels))})")
        args += query.levels
    for sql, value in (("type = ?", query.type), ("base_model = ?", query.base_model)):
        if value:
            where.append(sql)
            args.append(value)
    for sql, number in (("width >= ?", query.min_width), ("height >= ?", query.min_height),
                        ("reactions >= ?", query.min_reactions)):
        if number:
            where.append(sql)
            args.append(number)
    if query.since is not None:
        where.append("created >= ?")
        args.append(_epoch(query.since))
    if query.until is not None:
        where.append("created < ?")
        args.append(_epoch(query.until) + 86400)
    if query.excluded != "show":
        where.append(("" if query.excluded == "only" else "NOT ") + "EXISTS (SELECT 1 FROM excluded e WHERE e.key = images.key)")
    if query.after is not None:
        where.append(f"({column}, n) {'<' if direction == 'DESC' else '>'} (?, ?)")
        args += list(query.after)
    sql = (f"SELECT n, key, at, {column}, EXISTS (SELECT 1 FROM excluded e WHERE e.key = images.key) FROM images"
           + (" WHERE " + " AND ".join(where) if where else "")
           + f" ORDER BY {column} {direction}, n {direction} LIMIT ?")
    rows = db.execute(sql, [*args, query.limit + 1]).fetchall()
    found = [Found(n, key, at, float(value), bool(ex)) for n, key, at, value, ex in rows[:query.limit]]
    more = len(rows) > query.limit
    return found, ((found[-1].sort_value, found[-1].n) if more and found else None)


def _epoch(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()
