"""`CrawlConfig`: the crawl's settings as one frozen dataclass, and the one declaration of every option.

Each field declared with `option(...)` is an option: its flag, TOML key, default, help and checks are
derived from that declaration (`OPTIONS`). Built and validated by `crawler.config.sources.build`.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from crawler import urls
from crawler.config.options import (
                                    DEFAULT_API_BASE,
                                    MODEL_SORTS,
                                    NSFW,
                                    NSFW_LEVELS,
                                    PERIODS,
                                    SORTS,
                                    TYPES,
                                    USER_AGENT,
                                    ConfigError,
                                    Option,
                                    option,
                                    options_of,
                                    )
from crawler.locations import is_remote, parse_storage_options


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Which API path a feed reads, and the shape of its answers."""

    path: str  # e.g. "/images", "/models", "/models/123", "/model-versions/456"
    shape: str = "images"  # "images" | "models" (a list of models) | "model" | "version" (one object)

    @property
    def paged(self) -> bool:
        return self.shape in ("images", "models")


IMAGES = Endpoint("/images")


@dataclass(frozen=True, slots=True)
class CrawlConfig:
    out: str  # a directory, or an fsspec URL such as s3://bucket/prefix
    state: Path  # the manifest, lock and snapshot: --state, or --out itself when it is a directory
    # What to fetch (API parameters).
    source: str = option("images", "what to mirror: the /images feed, or the images of models (/models, "
                         "/models/{id} with --model-id, /model-versions/{id} with --model-version-id)", identity=True,
                         choices=("images", "models"), metavar="images|models")
    sort: str | None = option(None, "feed order (API default: Most Reactions; for --source models: Highest Rated, "
                              "Most Downloaded, Newest)", query=True, choices=SORTS + MODEL_SORTS,
                              metavar="ORDER")
    period: str | None = option(None, "time window (API default: AllTime)", query=True, choices=PERIODS,
                                metavar="WINDOW")
    nsfw: str | None = option(None, "legacy level filter; without it or --browsing-level the API returns PG only",
                              query=True, choices=NSFW, metavar="LEVEL")
    browsing_level: int | None = option(None, "bitmask 1 PG, 2 PG-13, 4 R, 8 X, 16 XXX (31 = all); wins over --nsfw",
                                        query=True, minimum=1, maximum=31, metavar="MASK")
    username: str | None = option(None, "only this creator's images", query=True, metavar="NAME")
    user_id: int | None = option(None, "only this creator's images, by id", query=True, minimum=1, metavar="ID")
    post_id: int | None = option(None, "only this post's images", query=True, minimum=1, metavar="ID")
    model_id: int | None = option(None, "only images made with this model", query=True, minimum=1, metavar="ID")
    model_version_id: int | None = option(None, "only images made with this model version", query=True, minimum=1,
                                          metavar="ID")
    base_model: tuple[str, ...] = option((), "only this base model, e.g. 'SDXL 1.0' (repeatable)", query=True,
                                         metavar="NAME")
    type: str | None = option(None, "only this media type", query=True, choices=TYPES,
                              metavar="image|video|audio")
    tag_id: tuple[str, ...] = option((), "only images with this tag id (repeatable: any of them; sent as tags=ID,ID)",
                                     query=True, metavar="ID")
    with_tags: bool = option(False, "ask for each image's tags (withTags=true): kept in the manifest, exported as a "
                             "tags column", query=True)
    with_meta: bool = option(True, "ask for generation metadata (prompt, seed, ...) with each image", query=True,
                             off_help="do not ask for generation metadata (meta is then null in every record)",
                             flags=("--with-meta", "--no-meta"))
    query: str | None = option(None, "--source models: models whose name matches", query=True, metavar="TEXT")
    tag: str | None = option(None, "--source models: models with this tag", query=True, metavar="TAG")
    types: tuple[str, ...] = option((), "--source models: model type, e.g. Checkpoint, LORA (repeatable)", query=True,
                                    metavar="TYPE")
    limit: int = option(100, "page size asked of the API (1..200; 1..100 for --source models)", minimum=1,
                        maximum=200, metavar="N")
    max_images: int | None = option(None, "stop when the mirror holds N images of this query",
                                        minimum=1, metavar="N")
    max_pages: int | None = option(None, "stop after N API pages", minimum=1, metavar="N")
    # Filters: applied to each item before download; skipped items are counted by reason.
    require_meta: bool = option(False, "only images that carry a prompt", identity=True)
    min_width: int | None = option(None, "only images at least this wide (original size)", identity=True, minimum=1,
                                   metavar="PX")
    min_height: int | None = option(None, "only images at least this tall (original size)", identity=True, minimum=1,
                                    metavar="PX")
    min_reactions: int | None = option(None, "only images with at least N reactions (like+heart+laugh+cry)",
                                       identity=True, minimum=0, metavar="N")
    max_nsfw_level: str | None = option(None, "only images up to this level (string or numeric nsfwLevel)",
                                        identity=True, choices=NSFW_LEVELS, metavar="LEVEL")
    exclude_user: tuple[str, ...] = option((), "skip this creator's images (repeatable)", identity=True, metavar="NAME")
    since: str | None = option(None, "only images created at or after DATE (ISO, e.g. 2025-01-31); with --sort Newest "
                               "paging stops once items are older", identity=True, metavar="DATE")
    until: str | None = option(None, "only images created before DATE (ISO)", identity=True, metavar="DATE")
    # How to fetch.
    api_base: str = option(DEFAULT_API_BASE, "API root (wins over --site)", metavar="URL")
    site: str | None = option(None, "which CivitAI site's API to read: com (SFW front), red (every level), green "
                              "(SFW only); default civitai.com", choices=tuple(urls.SITES), metavar="com|red|green")
    width: int | None = option(None, "download at this width (rewrites the URL's width= segment; default: the item's "
                               "own URL)", minimum=1, maximum=100_000, metavar="PX")
    original: bool = option(False, "download the original upload (original=true), videos too unless --video-width")
    video_width: int | None = option(None, "download videos at this width (--width is for images; default: the "
                                     "item's own URL); a resized video may come back as one frame, failed "
                                     "video-as-still", minimum=1, maximum=100_000, metavar="PX")
    video_original: bool = option(False, "download videos as uploaded (original=true)")
    fsync: bool = option(True, "fsync files, then the manifest, in group commits about ten times a second",
                         off_help="skip fsync: faster, still safe against kill -9, but a power loss may lose recent "
                         "files (for scratch mirrors)")
    concurrency: int = option(16, "parallel image downloads", minimum=1, maximum=1024, metavar="N")
    api_rps: float = option(2.0, "API requests per second", minimum=0.01, maximum=1000, metavar="R")
    cdn_rps: float = option(50.0, "image requests per second", minimum=0.01, maximum=100_000, metavar="R")
    max_rate: int | None = option(None, "at most SIZE bytes a second from the CDN, for the whole pool, e.g. 2M",
                                  minimum=1024, metavar="SIZE", unit="size")
    retries: int = option(5, "retries per request after the first try (5xx, resets, truncated, stalled)", minimum=0,
                          maximum=100, metavar="N")
    timeout: float = option(60.0, "time without a byte before a request counts as stalled, e.g. 60s, 2m (seconds "
                            "without a unit)", minimum=0.1, maximum=3600, metavar="DURATION", unit="duration")
    max_bytes: int = option(512 * 1024 * 1024, "largest file accepted, e.g. 512M, 2GB (bytes without a unit)",
                            minimum=1, metavar="SIZE", unit="size")
    allow_host: tuple[str, ...] = option((), "also download from this host (repeatable)", metavar="HOST")
    ca_file: str | None = option(None, "trust only the CA certificates in this PEM file for HTTPS (API and CDN), "
                                 "instead of the system's store", metavar="PEM")
    backoff_base: float = option(1.0, "first retry delay (doubles per try, with jitter; seconds without a unit)",
                                 minimum=0.0, maximum=600, metavar="DURATION", unit="duration")
    backoff_max: float = option(60.0, "longest retry delay (seconds without a unit)", minimum=0.0, maximum=3600,
                                metavar="DURATION", unit="duration")
    max_empty_pages: int = option(50, "give up after this many consecutive empty pages that still carry a cursor",
                                  minimum=1, metavar="N")
    depth_cap: int = option(50_000, "the depth at which the API is believed to stop paging one query: a chain that "
                            "ends after about N items is reported depth-capped (exit 1), not complete", minimum=1,
                            metavar="N")
    deep: bool = option(False, "mirror everything the query matches beyond --depth-cap: list it Newest and Oldest "
                        "until they meet, splitting by browsing level and media type where they do not (then period "
                        "windows and base models, which only narrow a gap); what cannot be proven is reported as "
                        "gaps (exit 1)")
    deep_base_models: tuple[str, ...] = option(
        ("SDXL 1.0", "Pony", "Illustrious", "SD 1.5", "Flux.1 D", "NoobAI", "Flux.1 S", "SD 2.1", "Other"),
        "--deep: the base models a part that levels and types cannot divide is split by (repeatable; replaces the "
        "list): each is proven alone, which narrows a gap to the images of other or no base model", metavar="NAME")
    shutdown_grace: float = option(5.0, "time in-flight downloads may finish after SIGINT/SIGTERM (seconds without "
                                   "a unit)", minimum=0.0, maximum=600, metavar="DURATION", unit="duration")
    progress: str = option("auto", "progress display: auto (live on a terminal, log lines otherwise), live, log, none",
                           choices=("auto", "live", "log", "none"), metavar="MODE")
    log_interval: float = option(10.0, "time between progress log lines when not on a terminal, e.g. 30s, 5m",
                                 minimum=0.1, metavar="DURATION", unit="duration")
    log_format: str = option("text", "log lines as readable text or as JSON objects (one per line)",
                             choices=("text", "json"), metavar="text|json")
    log_file: str | None = option(None, "also append every log line to FILE (in --log-format; progress every "
                                  "--log-interval, as the log mode prints it), for unattended runs", metavar="FILE")
    min_free: int | None = option(None, "stop cleanly (reason disk-reserve, resumable) before the mirror's disk has "
                                  "less than SIZE free, e.g. 5G", minimum=1, metavar="SIZE", unit="size")
    # Where images go and who downloads them.
    storage_option: tuple[str, ...] = option((), "an fsspec option for an object-store --out, KEY=VALUE (repeatable; "
                                             "dotted keys nest, e.g. client_kwargs.region_name=eu-west-1); credentials "
                                             "and endpoint come from the AWS_* environment", metavar="KEY=VALUE")
    executor: str = option("local", "who downloads: this process (local), or download actors on a Ray cluster (ray; "
                           "pip install 'civitai-mirror[ray]')", choices=("local", "ray"), metavar="local|ray")
    ray_address: str | None = option(None, "--executor ray: the cluster to join, 'auto' (the one this machine belongs "
                                     "to) or HOST:PORT (default: start a local Ray)", metavar="ADDR")
    download_workers: int = option(2, "--executor ray: download actors; --cdn-rps is split between them and "
                                   "--concurrency is per actor", minimum=1, maximum=1024, metavar="N")
    api_key: str | None = field(default=None, repr=False)  # never printed, never written

    def __post_init__(self) -> None:
        # --site names the API root unless --api-base was given (a default --api-base is not "given").
        if self.site is not None and self.api_base == DEFAULT_API_BASE:
            object.__setattr__(self, "api_base", urls.SITES[self.site])
        if self.video_width is not None and self.video_original:
            raise ConfigError("--video-width and --video-original contradict each other; give one")
        bad = [t for t in self.tag_id if not t.isdigit()]
        if bad:
            raise ConfigError(f"--tag-id takes numeric tag ids, got {bad[0]!r}")
        if self.ca_file is not None:
            # Absolute: the file is read again where sessions are made, Ray actors included (another cwd).
            object.__setattr__(self, "ca_file", _check_ca_file(self.ca_file))

    def api_params(self) -> list[tuple[str, str]]:
        """The query of the endpoint read (without cursor), in a stable order."""
        if self.source == "models" and (self.model_id or self.model_version_id):
            return []  # one model or one version: the id is in the path
        params: list[tuple[str, str]] = [("limit", str(self.limit))]
        models = self.source == "models"
        for o in OPTIONS:
            wanted = o.name in _MODEL_PARAMS if models else (o.name not in _MODEL_PARAMS or o.name in _SHARED_PARAMS)
            if not o.query or not wanted:
                continue
            value = getattr(self, o.name)
            name = _API_NAMES.get(o.name, o.name)
            if o.name == "tag_id":
                if value:
                    params.append((name, ",".join(value)))  # the API takes one comma-separated list
            elif o.name == "with_tags":
                if value:
                    params.append((name, "true"))  # absent when off: older mirrors keep their query identity
            elif o.kind is list:
                params.extend((name, v) for v in value)
            elif o.kind is bool:
                params.append((name, "true" if value else "false"))
                if o.name == "with_meta" and value:
                    # Without it newer API versions wrap meta as {id, meta}; we want the plain object.
                    params.append(("flatMeta", "true"))
            elif value is not None:
                params.append((name, str(value)))
        return params

    def query_identity(self) -> str:
        """A short fingerprint of what is asked (not how), so checkpoints resume only the same query."""
        parts = sorted((k, v) for k, v in self.api_params() if k not in ("limit", "withTags"))
        parts.append(("api_base", self.api_base.rstrip("/")))
        parts.append(("endpoint", self.endpoint().path))
        parts.extend((o.name, repr(getattr(self, o.name))) for o in OPTIONS
                     if o.identity and getattr(self, o.name) not in (None, (), False, o.default))
        return hashlib.sha256(orjson.dumps(parts)).hexdigest()[:16]

    def query_summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {k: v for k, v in self.api_params() if k not in ("limit", "flatMeta")}
        summary.update((o.name, getattr(self, o.name)) for o in OPTIONS
                       if o.identity and getattr(self, o.name) not in (None, (), False, o.default))
        return summary

    def endpoint(self) -> Endpoint:
        if self.source == "images":
            return IMAGES
        if self.model_version_id:
            return Endpoint(f"/model-versions/{self.model_version_id}", "version")
        if self.model_id:
            return Endpoint(f"/models/{self.model_id}", "model")
        return Endpoint("/models", "models")

    @property
    def remote(self) -> bool:
        """Images go to an object store (through fsspec), not to a local directory."""
        return is_remote(self.out)

    def storage_options(self) -> dict[str, Any]:
        return parse_storage_options(self.storage_option)

    @property
    def user_agent(self) -> str:
        """What every request of the crawl says it is (`net.sessions` reads it through its Protocol)."""
        return USER_AGENT

    @property
    def allowed_hosts(self) -> frozenset[str]:
        # CivitAI's image hosts; the API's own host only when it is not a CivitAI site (a proxy, the simulator).
        api_host = urls.host_of(self.api_base)
        own = set() if api_host in urls.CIVITAI_SITE_HOSTS else {api_host}
        return urls.CIVITAI_IMAGE_HOSTS | own | {h.lower() for h in self.allow_host}


def _check_ca_file(path: str) -> str:
    """--ca-file must load as PEM certificates now, not fail later as a traceback in every session."""
    path = str(Path(path).expanduser().absolute())
    try:
        ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        raise ConfigError(f"--ca-file {path}: no such file") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--ca-file {path}: not a PEM file of CA certificates ({exc.strerror or exc})") from None
    return path


OPTIONS: tuple[Option, ...] = options_of(CrawlConfig)
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
_SHARED_PARAMS = frozenset({"username", "sort", "period", "nsfw"})  # both /images and /models take these
_MODEL_PARAMS = frozenset({"query", "tag", "types"}) | _SHARED_PARAMS  # all that /models takes
# Names by which the API knows our query options.
_API_NAMES = {"browsing_level": "browsingLevel", "user_id": "userId", "post_id": "postId", "model_id": "modelId",
              "model_version_id": "modelVersionId", "base_model": "baseModels", "with_meta": "withMeta",
              "tag_id": "tags", "with_tags": "withTags"}
