"""A plan: one query split into partitions that run as independent cursor chains into one mirror.

    civitai-mirror plan --by username --value alice --value bob --to plan.json [query flags]
    civitai-mirror crawl --plan plan.json --out DIR [query flags]

One cursor chain is sequential -- each page waits for the previous one's cursor -- so a big job is
bounded by the API's latency, not by its rate limit. Partitions are disjoint slices of the query
(`username`, `baseModels` and `modelVersionId` are API filters; `period` windows are the API's
periods made disjoint by a client-side `--until`), each with its own checkpoints; they share the
crawl's API rate, queue and done-set, so an image listed by two partitions is fetched once.

The plan file is JSON: {"version", "created", "by", "query", "partitions": [{"name", "settings"}]}.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from crawler import normalise
from crawler.config import settings as config_mod
from crawler.config.settings import ConfigError, CrawlConfig
from crawler.net.retry import Retryable, attempts
from crawler.net.sessions import open_net
from crawler.state.files import write_durable

PLAN_VERSION = 1
BY = ("username", "base-model", "model-version", "period")
# What a partition may set: the filters it slices by, what period windows need, and what --deep's parts set.
SETTABLE = ("username", "base_model", "model_version_id", "period", "sort", "until", "browsing_level", "type")
# Shortest length of each API period (a calendar month can be 28 days): the window boundary is put
# there, so an item is never between two windows; the longer months only overlap (fetched once).
PERIOD_DAYS = (("Day", 1), ("Week", 7), ("Month", 28), ("Year", 365))


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    settings: dict[str, Any]  # option name -> value, laid over the crawl's settings


def apply_partition(cfg: CrawlConfig, partition: Partition) -> CrawlConfig:
    """The crawl's settings with the partition's, validated like flags."""
    values = {}
    for name, value in partition.settings.items():
        option = _option(name, partition.name)
        values[name] = config_mod.coerce(option, value, f"plan partition {partition.name!r}: {name}")
    chained = dataclasses.replace(cfg, **values)
    config_mod.check_whole(chained)
    return chained


def plan_identity(queries: list[str]) -> str:
    return hashlib.sha256(orjson.dumps(sorted(queries))).hexdigest()[:16]


def split(cfg: CrawlConfig, by: str, values: list[str], now: datetime | None = None,
          overlap: timedelta = timedelta(days=1)) -> list[Partition]:
    """Partitions of `cfg`'s query: one per value, or period windows measured back from `now`
    (the API server's clock when the plan is made)."""
    if cfg.source != "images":
        raise ConfigError("plan splits the /images feed (--source images)")
    if by == "period":
        if values:
            raise ConfigError("--by period takes no --value: the windows are Day, Week, Month, Year and the rest")
        if cfg.period or cfg.until or cfg.sort not in (None, "Newest"):
            raise ConfigError("--by period sets --period, --sort Newest and --until itself: drop them from the query")
        assert now is not None
        return _period_windows(now, overlap)
    if not values:
        raise ConfigError(f"--by {by} needs the values to split by: --value V (repeatable)")
    if len(set(values)) != len(values):
        raise ConfigError("--value: the same value is given twice; partitions must be disjoint")
    name = {"username": "username", "base-model": "base_model", "model-version": "model_version_id"}[by]
    if getattr(cfg, name):
        raise ConfigError(f"--by {by} sets --{name.replace('_', '-')} per partition: drop it from the query")
    if by == "model-version":
        bad = [v for v in values if not v.isdigit() or int(v) < 1]
        if bad:
            raise ConfigError(f"--by model-version: {bad[0]!r} is not a model version id")
    if by == "base-model":
        return [Partition(f"baseModels={v}", {"base_model": [v]}) for v in values]
    return [Partition(f"{by}={v}", {name: v if by == "username" else int(v)}) for v in values]


def _period_windows(now: datetime, overlap: timedelta) -> list[Partition]:
    """Day, then each longer period without the shorter one (client-side --until, overlapping by `overlap`)."""
    windows = [Partition("period=Day", {"period": "Day", "sort": "Newest"})]
    longer = [name for name, _days in PERIOD_DAYS[1:]] + ["AllTime"]
    for (inner, days), outer in zip(PERIOD_DAYS, longer):
        until = now - timedelta(days=days) + overlap
        windows.append(Partition(f"period={outer}-not-{inner}", {"period": outer, "sort": "Newest",
                                                                  "until": _iso(until)}))
    return windows


def save(path: Path, cfg: CrawlConfig, by: str, partitions: list[Partition], overlap: timedelta) -> None:
    data = {"version": PLAN_VERSION, "created": _iso(datetime.now(UTC)), "by": by,
            "overlap_seconds": overlap.total_seconds(), "query": cfg.query_summary(),
            "partitions": [{"name": p.name, "settings": p.settings} for p in partitions]}
    try:
        write_durable(path, orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    except OSError as e:
        raise ConfigError(f"--to {path}: cannot write the plan: {e.strerror or e}") from None


def load(path: Path) -> tuple[list[Partition], dict[str, Any]]:
    """(partitions, the plan's header); every problem is a ConfigError naming the file."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"--plan {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"--plan {path}: {e.strerror}") from None
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"--plan {path} is not JSON: {e}") from None
    if not isinstance(data, dict) or data.get("version") != PLAN_VERSION or not isinstance(data.get("partitions"), list):
        raise ConfigError(f"--plan {path} is not a plan made by `civitai-mirror plan` (version {PLAN_VERSION})")
    partitions = []
    for n, entry in enumerate(data["partitions"], 1):
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("settings"), dict)):
            raise ConfigError(f"--plan {path}: partition {n} needs a name and settings")
        for name in entry["settings"]:
            _option(name, entry["name"])
        partitions.append(Partition(entry["name"], entry["settings"]))
    if not partitions:
        raise ConfigError(f"--plan {path} has no partitions")
    if len({p.name for p in partitions}) != len(partitions):
        raise ConfigError(f"--plan {path}: two partitions have the same name")
    return partitions, {k: v for k, v in data.items() if k != "partitions"}


def expires(header: dict[str, Any]) -> float | None:
    """When a plan of period windows stops being safe (epoch seconds); None for other plans.

    The windows are cut at the plan's time, but the API measures each period from the moment of each
    request: once more time has passed than the windows overlap, an item can have left a shorter
    period without being inside the longer window's cut yet. A crawl refuses an expired plan and
    stops (`plan-expired`) when its plan expires while it runs; a new plan goes on from there.
    """
    if header.get("by") != "period":
        return None
    created = normalise.parse_time(str(header.get("created")))
    overlap = header.get("overlap_seconds")
    if created is None or not isinstance(overlap, (int, float)):
        raise ConfigError("the plan has no valid 'created' or 'overlap_seconds': make a new plan")
    return created.timestamp() + overlap


async def server_now(cfg: CrawlConfig) -> datetime:
    """The API server's clock (its Date header), from which it measures `period`: period windows are
    cut there, not at this machine's clock, which may be off. One request, retried like a page."""
    url = cfg.api_base.rstrip("/") + "/images"
    headers = {"User-Agent": config_mod.USER_AGENT, "Accept": "application/json"}
    if cfg.api_key:
        headers["Authorization"] = f"Bearer {cfg.api_key}"

    async with open_net(cfg) as net:
        session = net.api
        assert session is not None

        async def ask() -> str | None:
            try:
                async with session.get(url, params={"limit": "1"}, headers=headers) as response:
                    if response.status == 429 or response.status >= 500:
                        raise Retryable(f"http-{response.status}")
                    return response.headers.get("Date")
            except aiohttp.ClientError as e:
                raise Retryable("connection", type(e).__name__) from None
            except TimeoutError:
                raise Retryable("stalled") from None

        date = await attempts(ask, net.policy, random.Random())
    try:
        when = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        when = None
    return when.astimezone(UTC) if when is not None else datetime.now(UTC)


def _option(name: str, partition: str) -> config_mod.Option:
    if name not in SETTABLE:
        raise ConfigError(f"plan partition {partition!r}: {name!r} cannot be set by a partition "
                          f"(one of: {', '.join(SETTABLE)})")
    return config_mod.BY_NAME[name]


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
