"""The crawl's settings: one frozen dataclass built once from defaults, a TOML file, the environment and flags.

A single table of options drives the TOML keys, the command-line flags, their help and validation, so
the three can never disagree; every problem is reported as one readable `ConfigError` line.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from crawler import normalise, urls
from crawler.locations import is_remote, local_path, parse_storage_options

SORTS = ("Most Reactions", "Most Comments", "Most Collected", "Newest", "Oldest", "Random")
MODEL_SORTS = ("Highest Rated", "Most Downloaded")
PERIODS = ("AllTime", "Year", "Month", "Week", "Day")
NSFW = ("None", "Soft", "Mature", "X", "true", "false")
TYPES = ("image", "video", "audio")
DEFAULT_API_BASE = "https://civitai.com/api/v1"
USER_AGENT = "civitai-mirror/0.1 (+https://github.com/civitai-mirror/civitai-mirror)"
API_KEY_ENV = "CIVITAI_API_KEY"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Which API path a feed reads, and the shape of its answers."""

    path: str  # e.g. "/images", "/models", "/models/123", "/model-versions/456"
    shape: str = "images"  # "images" | "models" (a list of models) | "model" | "version" (one object)

    @property
    def paged(self) -> bool:
        return self.shape in ("images", "models")


IMAGES = Endpoint("/images")


class ConfigError(ValueError):
    """A bad flag, file or value; the message is the one line the user sees."""


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    kind: type  # int, float, str, bool or list (of str)
    default: Any
    help: str
    query: bool = False  # sent to the API, part of the query identity
    identity: bool = False  # not sent, but changes which images a crawl takes (filters): part of the identity
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    metavar: str | None = None
    off_help: str | None = None  # for a boolean that is on by default: what its --no- flag does

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    # What to fetch (API parameters).
    Option("source", str, "images", "what to mirror: the /images feed, or the images of models (/models, "
           "/models/{id} with --model-id, /model-versions/{id} with --model-version-id)", identity=True,
           choices=("images", "models")),
    Option("sort", str, None, "feed order (API default: Most Reactions; for --source models: Highest Rated, "
           "Most Downloaded, Newest)", query=True, choices=SORTS + MODEL_SORTS),
    Option("period", str, None, "time window (API default: AllTime)", query=True, choices=PERIODS),
    Option("nsfw", str, None, "legacy level filter; without it or --browsing-level the API returns PG only", query=True, choices=NSFW),
    Option("browsing_level", int, None, "bitmask 1 PG, 2 PG-13, 4 R, 8 X, 16 XXX (31 = all); wins over --nsfw", query=True, minimum=1, maximum=31, metavar="MASK"),
    Option("username", str, None, "only this creator's images", query=True, metavar="NAME"),
    Option("user_id", int, None, "only this creator's images, by id", query=True, minimum=1, metavar="ID"),
    Option("post_id", int, None, "only this post's images", query=True, minimum=1, metavar="ID"),
    Option("model_id", int, None, "only images made with this model", query=True, minimum=1, metavar="ID"),
    Option("model_version_id", int, None, "only images made with this model version", query=True, minimum=1, metavar="ID"),
    Option("base_model", list, (), "only this base model, e.g. 'SDXL 1.0' (repeatable)", query=True, metavar="NAME"),
    Option("type", str, None, "only this media type", query=True, choices=TYPES),
    Option("with_meta", bool, True, "ask for generation metadata (prompt, seed, ...) with each image", query=True,
           off_help="do not ask for generation metadata (meta is then null in every record)"),
    Option("query", str, None, "--source models: models whose name matches", query=True, metavar="TEXT"),
    Option("tag", str, None, "--source models: models with this tag", query=True, metavar="TAG"),
    Option("types", list, (), "--source models: model type, e.g. Checkpoint, LORA (repeatable)", query=True, metavar="TYPE"),
    Option("limit", int, 100, "page size asked of the API (1..200; 1..100 for --source models)", minimum=1, maximum=200, metavar="N"),
    Option("max_images", int, None, "stop after N new images", minimum=1, metavar="N"),
    Option("max_pages", int, None, "stop after N API pages", minimum=1, metavar="N"),
    # Filters: applied to each item before download; skipped items are counted by reason.
    Option("require_meta", bool, False, "only images that carry a prompt", identity=True),
    Option("min_width", int, None, "only images at least this wide (original size)", identity=True, minimum=1, metavar="PX"),
    Option("min_height", int, None, "only images at least this tall (original size)", identity=True, minimum=1, metavar="PX"),
    Option("min_reactions", int, None, "only images with at least N reactions (like+heart+laugh+cry)", identity=True, minimum=0, metavar="N"),
    Option("max_nsfw_level", str, None, "only images up to this level (string or numeric nsfwLevel)", identity=True,
           choices=("None", "Soft", "Mature", "X")),
    Option("exclude_user", list, (), "skip this creator's images (repeatable)", identity=True, metavar="NAME"),
    Option("since", str, None, "only images created at or after DATE (ISO, e.g. 2025-01-31); with --sort Newest "
           "paging stops once items are older", identity=True, metavar="DATE"),
    Option("until", str, None, "only images created before DATE (ISO)", identity=True, metavar="DATE"),
    # How to fetch.
    Option("api_base", str, DEFAULT_API_BASE, "API root", metavar="URL"),
    Option("width", int, None, "download at this width (rewrites the URL's width= segment; default: the item's own URL)", minimum=1, maximum=100_000, metavar="PX"),
    Option("original", bool, False, "download the original upload (original=true)"),
    Option("fsync", bool, True, "fsync files, then the manifest, in group commits about once a second",
           off_help="skip fsync: faster, still safe against kill -9, but a power loss may lose recent files "
           "(for scratch mirrors)"),
    Option("concurrency", int, 16, "parallel image downloads", minimum=1, maximum=1024, metavar="N"),
    Option("api_rps", float, 2.0, "API requests per second", minimum=0.01, maximum=1000, metavar="R"),
    Option("cdn_rps", float, 50.0, "image requests per second", minimum=0.01, maximum=100_000, metavar="R"),
    Option("retries", int, 5, "retries per request after the first try (5xx, resets, truncated, stalled)", minimum=0, maximum=100, metavar="N"),
    Option("timeout", float, 60.0, "seconds without a byte before a request counts as stalled", minimum=0.1, maximum=3600, metavar="S"),
    Option("max_bytes", int, 512 * 1024 * 1024, "largest file accepted, in bytes", minimum=1, metavar="N"),
    Option("allow_host", list, (), "also download from this host (repeatable)", metavar="HOST"),
    Option("backoff_base", float, 1.0, "first retry delay in seconds (doubles per try, with jitter)", minimum=0.0, maximum=600, metavar="S"),
    Option("backoff_max", float, 60.0, "longest retry delay in seconds", minimum=0.0, maximum=3600, metavar="S"),
    Option("max_empty_pages", int, 50, "give up after this many consecutive empty pages that still carry a cursor", minimum=1, metavar="N"),
    Option("shutdown_grace", float, 5.0, "seconds in-flight downloads may finish after SIGINT/SIGTERM", minimum=0.0, maximum=600, metavar="S"),
    Option("progress", str, "auto", "progress display: auto (live on a terminal, log lines otherwise), live, log, none", choices=("auto", "live", "log", "none")),
    Option("log_interval", float, 10.0, "seconds between progress log lines when not on a terminal", minimum=0.1, metavar="S"),
    Option("log_format", str, "text", "log lines as readable text or as JSON objects (one per line)", choices=("text", "json")),
    # Where images go and who downloads them.
    Option("storage_option", list, (), "an fsspec option for an object-store --out, KEY=VALUE (repeatable; dotted keys "
           "nest, e.g. client_kwargs.region_name=eu-west-1); credentials and endpoint come from the AWS_* environment",
           metavar="KEY=VALUE"),
    Option("executor", str, "local", "who downloads: this process (local), or download actors on a Ray cluster (ray; "
           "pip install 'civitai-mirror[ray]')", choices=("local", "ray")),
    Option("ray_address", str, None, "--executor ray: the cluster to join, 'auto' (the one this machine belongs to) or "
           "HOST:PORT (default: start a local Ray)", metavar="ADDR"),
    Option("download_workers", int, 2, "--executor ray: download actors; --cdn-rps is split between them and "
           "--concurrency is per actor", minimum=1, maximum=1024, metavar="N"),
)
_BY_NAME = {o.name: o for o in OPTIONS}
_SHARED_PARAMS = frozenset({"username", "sort", "period", "nsfw"})  # both /images and /models take these
_MODEL_PARAMS = frozenset({"query", "tag", "types"}) | _SHARED_PARAMS  # all that /models takes
_BOOL_FLAGS = {"with_meta": ("--with-meta", "--no-meta")}
# Names by which the API knows our query options.
_API_NAMES = {"browsing_level": "browsingLevel", "user_id": "userId", "post_id": "postId", "model_id": "modelId",
              "model_version_id": "modelVersionId", "base_model": "baseModels", "with_meta": "withMeta"}


@dataclass(frozen=True, slots=True)
class CrawlConfig:
    out: str  # a directory, or an fsspec URL such as s3://bucket/prefix
    state: Path  # the manifest, lock and snapshot: --state, or --out itself when it is a directory
    source: str = "images"
    sort: str | None = None
    period: str | None = None
    nsfw: str | None = None
    browsing_level: int | None = None
    username: str | None = None
    user_id: int | None = None
    post_id: int | None = None
    model_id: int | None = None
    model_version_id: int | None = None
    base_model: tuple[str, ...] = ()
    type: str | None = None
    with_meta: bool = True
    query: str | None = None
    tag: str | None = None
    types: tuple[str, ...] = ()
    limit: int = 100
    max_images: int | None = None
    max_pages: int | None = None
    require_meta: bool = False
    min_width: int | None = None
    min_height: int | None = None
    min_reactions: int | None = None
    max_nsfw_level: str | None = None
    exclude_user: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    api_base: str = DEFAULT_API_BASE
    width: int | None = None
    original: bool = False
    fsync: bool = True
    concurrency: int = 16
    api_rps: float = 2.0
    cdn_rps: float = 50.0
    retries: int = 5
    timeout: float = 60.0
    max_bytes: int = 512 * 1024 * 1024
    allow_host: tuple[str, ...] = ()
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_empty_pages: int = 50
    shutdown_grace: float = 5.0
    progress: str = "auto"
    log_interval: float = 10.0
    log_format: str = "text"
    storage_option: tuple[str, ...] = ()
    executor: str = "local"
    ray_address: str | None = None
    download_workers: int = 2
    api_key: str | None = field(default=None, repr=False)  # never printed, never written

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
            if o.kind is list:
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
        parts = sorted((k, v) for k, v in self.api_params() if k != "limit")
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
    def allowed_hosts(self) -> frozenset[str]:
        api_host = urls.host_of(self.api_base)
        return urls.CIVITAI_IMAGE_HOSTS | {api_host} | {h.lower() for h in self.allow_host}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option as a flag whose default is None, so only what the user typed overrides the file."""
    for o in OPTIONS:
        if o.kind is bool:
            positive, negative = _BOOL_FLAGS.get(o.name, (o.flag, "--no-" + o.flag[2:]))
            group = parser.add_mutually_exclusive_group()
            # Show the flag that changes the default; keep the other for scripts that spell it out.
            group.add_argument(positive, dest=o.name, action="store_const", const=True, default=None,
                               help=argparse.SUPPRESS if o.default else o.help)
            group.add_argument(negative, dest=o.name, action="store_const", const=False, default=None,
                               help=(o.off_help or f"do not {o.help}") if o.default else argparse.SUPPRESS)
        elif o.kind is list:
            parser.add_argument(o.flag, dest=o.name, action="append", default=None, metavar=o.metavar, help=o.help)
        else:
            shown = "" if o.default is None else f" (default: {o.default})"
            parser.add_argument(o.flag, dest=o.name, default=None, metavar=o.metavar or o.name.upper(),
                                help=o.help + shown + (f"; one of: {', '.join(o.choices)}" if o.choices else ""))


def _coerce(o: Option, value: Any, where: str) -> Any:
    """`value` (a CLI string or a TOML value) as the option's type, or a ConfigError naming `where`."""
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{where}: {why}")

    if value is None:
        return None
    if o.kind is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise bad("expected a list of non-empty strings")
        return tuple(value)
    if o.kind is bool:
        if isinstance(value, bool):
            return value
        raise bad(f"expected true or false, got {value!r}")
    if o.kind is int:
        if isinstance(value, bool):
            raise bad(f"expected an integer, got {value!r}")
        if isinstance(value, str):
            try:
                value = int(value.strip().replace("_", ""), 10)
            except ValueError:
                raise bad(f"expected an integer, got {value!r}") from None
        if not isinstance(value, int):
            raise bad(f"expected an integer, got {value!r}")
    elif o.kind is float:
        if isinstance(value, bool):
            raise bad(f"expected a number, got {value!r}")
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise bad(f"expected a number, got {value!r}") from None
        if not isinstance(value, (int, float)) or value != value:
            raise bad(f"expected a number, got {value!r}")
        value = float(value)
    elif o.kind is str:
        if not isinstance(value, str) or not value.strip():
            raise bad(f"expected a non-empty string, got {value!r}")
    if o.choices is not None and value not in o.choices:
        raise bad(f"{value!r} is not one of: {', '.join(o.choices)}")
    if o.minimum is not None and value < o.minimum:
        raise bad(f"must be at least {o.minimum:g}, got {value}")
    if o.maximum is not None and value > o.maximum:
        raise bad(f"must be at most {o.maximum:g}, got {value}")
    return value


def load_toml(path: Path) -> dict[str, Any]:
    """The file's settings by option name; unknown keys and bad values are errors naming the key."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {getattr(e, 'strerror', None) or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    # A [crawl] table is accepted so one file can later hold sections for other commands.
    if isinstance(data.get("crawl"), dict):
        data = {**{k: v for k, v in data.items() if k != "crawl"}, **data["crawl"]}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name in ("out", "api_key"):
            hint = " (the API key is read from the environment variable CIVITAI_API_KEY only)" if name == "api_key" else ""
            raise ConfigError(f"config file {path}: key '{key}' is not allowed here{hint}")
        o = _BY_NAME.get(name)
        if o is None:
            raise ConfigError(f"config file {path}: unknown key '{key}'")
        values[name] = _coerce(o, value, f"config file {path}: key '{key}'")
    return values


def build(out: str | Path | None, cli: dict[str, Any], config_file: str | Path | None = None,
          env: dict[str, str] | None = None, state: str | Path | None = None) -> CrawlConfig:
    """Defaults, then the TOML file, then flags; the key from the environment. Validated as a whole."""
    return build_with_sources(out, cli, config_file, env, state)[0]


def state_root(out: str | Path, state: str | Path | None) -> Path:
    """Where the manifest and lock live: --state, else --out when it is a local directory."""
    if state is not None and str(state).strip():
        if is_remote(str(state)):
            raise ConfigError(f"--state must be a local directory, got {state}")
        return local_path(str(state))
    if is_remote(str(out)):
        raise ConfigError(f"--out {out} is an object store: give --state DIR, a local directory for the manifest and "
                          "lock (one crawler writes them; keep it on a disk that survives the machine)")
    return local_path(str(out))


def build_with_sources(out: str | Path | None, cli: dict[str, Any], config_file: str | Path | None = None,
                       env: dict[str, str] | None = None,
                       state: str | Path | None = None) -> tuple[CrawlConfig, dict[str, str]]:
    """As `build`, plus where each setting came from: default, file, environment or flag."""
    env = os.environ if env is None else env
    if out is None or str(out).strip() == "":
        raise ConfigError("--out DIR is required")
    values: dict[str, Any] = {o.name: o.default for o in OPTIONS}
    sources: dict[str, str] = {}
    if config_file is not None:
        from_file = load_toml(Path(config_file))
        values.update(from_file)
        sources.update((name, f"file {config_file}") for name in from_file)
    for o in OPTIONS:
        given = cli.get(o.name)
        if given is not None:
            values[o.name] = _coerce(o, given, o.flag)
            sources[o.name] = "flag"
    key = env.get(API_KEY_ENV, "").strip() or None
    if key:
        sources["api_key"] = f"environment {API_KEY_ENV}"
    out = str(out)
    if not is_remote(out):
        out = str(local_path(out))
    cfg = CrawlConfig(out=out, state=state_root(out, state), api_key=key, **values)
    _check_whole(cfg)
    return cfg, sources


def _check_whole(cfg: CrawlConfig) -> None:
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
    for name in ("since", "until"):
        value = getattr(cfg, name)
        if value is not None and normalise.parse_time(value) is None:
            raise ConfigError(f"--{name}: {value!r} is not an ISO date or date-time (e.g. 2025-01-31 or 2025-01-31T12:00:00Z)")
    if cfg.since and cfg.until and normalise.parse_time(cfg.since) >= normalise.parse_time(cfg.until):  # type: ignore[operator]
        raise ConfigError("--since must be before --until")
    if cfg.source == "images":
        for name in ("query", "tag", "types"):
            if getattr(cfg, name):
                raise ConfigError(f"--{name} only applies to --source models")
        if cfg.sort in MODEL_SORTS:
            raise ConfigError(f"--sort {cfg.sort!r} is a models sort; for images one of: {', '.join(SORTS)}")
    else:
        if cfg.sort not in (None, "Newest", *MODEL_SORTS):
            raise ConfigError(f"--sort {cfg.sort!r} is not a models sort; one of: Highest Rated, Most Downloaded, Newest")
        if cfg.limit > 100:
            raise ConfigError("--limit for --source models is at most 100")
        if cfg.browsing_level is not None or cfg.type or cfg.base_model or cfg.user_id or cfg.post_id:
            raise ConfigError("--browsing-level, --type, --base-model, --user-id and --post-id filter the /images feed; "
                              "for model images use --nsfw true (every level), --query, --tag, --types, --username")


def describe(cfg: CrawlConfig) -> dict[str, Any]:
    """The settings as plain data for the manifest and status; the key only as set/unset."""
    data = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in ("api_key", "out", "state")}
    data["api_key"] = "set" if cfg.api_key else "unset"
    # Storage options may carry secrets: only their keys are shown or written.
    data["storage_option"] = [pair.partition("=")[0] + "=..." for pair in cfg.storage_option]
    return data
