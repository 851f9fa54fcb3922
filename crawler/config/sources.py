"""Building a `CrawlConfig` from its sources: defaults, then a TOML file, then flags; the key from the environment.

Every problem is one `ConfigError` naming the flag or the file and key; `build_with_sources` also says
where each setting came from (for `config show`).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crawler.config.coerce import coerce
from crawler.config.crawl_config import BY_NAME, OPTIONS, CrawlConfig
from crawler.config.follow_options import FOLLOW_BY_NAME
from crawler.config.options import API_KEY_ENV, ConfigError
from crawler.config.validate import check_whole
from crawler.locations import is_remote, local_path

_OFF_KEYS = {o.off_key: o for o in OPTIONS if o.off_key}  # a boolean's --no-... flag, as a key
_KNOWN_KEYS = sorted({*BY_NAME, *_OFF_KEYS, *FOLLOW_BY_NAME})


def load_toml(path: Path) -> dict[str, Any]:
    """The file's crawl settings by option name; unknown keys and bad values are errors naming the key."""
    return read_toml(path)[0]


def read_toml(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(crawl settings, follow's own settings) from the file, by option name, each value checked.

    Every flag is a key: the flag without its dashes, `-` as `_` (`max_images`, `no_fsync = true`,
    `interval = "30m"`); an unknown key names the closest known one.
    """
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
    follow: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        where = f"config file {path}: key '{key}'"
        if name in ("out", "api_key"):
            hint = f" (the API key is read from the environment variable {API_KEY_ENV} only)" if name == "api_key" else ""
            raise ConfigError(f"config file {path}: key '{key}' is not allowed here{hint}")
        if name in FOLLOW_BY_NAME:
            follow[name] = coerce(FOLLOW_BY_NAME[name], value, where)
        elif name in _OFF_KEYS:  # `no_fsync = true` is `--no-fsync`
            o = _OFF_KEYS[name]
            if o.name in values:
                raise ConfigError(f"{where}: '{o.toml_key}' is given too; keep one")
            values[o.name] = not coerce(o, value, where)
        elif name in BY_NAME:
            if name in values:
                raise ConfigError(f"{where}: '{BY_NAME[name].off_key}' is given too; keep one")
            values[name] = coerce(BY_NAME[name], value, where)
        else:
            close = difflib.get_close_matches(name, _KNOWN_KEYS, n=1, cutoff=0.6)
            raise ConfigError(f"config file {path}: unknown key '{key}'" + (f"; did you mean '{close[0]}'?" if close else ""))
    return values, follow


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


def build(out: str | Path | None, cli: Mapping[str, Any], config_file: str | Path | None = None,
          env: Mapping[str, str] | None = None, state: str | Path | None = None) -> CrawlConfig:
    """Defaults, then the TOML file, then flags; the key from the environment. Validated as a whole."""
    return build_with_sources(out, cli, config_file, env, state)[0]


def build_with_sources(out: str | Path | None, cli: Mapping[str, Any], config_file: str | Path | None = None,
                       env: Mapping[str, str] | None = None,
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
            values[o.name] = coerce(o, given, o.flag)
            sources[o.name] = "flag"
    key = env.get(API_KEY_ENV, "").strip() or None
    if key:
        sources["api_key"] = f"environment {API_KEY_ENV}"
    out = str(out)
    if not is_remote(out):
        out = str(local_path(out))
    cfg = CrawlConfig(out=out, state=state_root(out, state), api_key=key, **values)
    check_whole(cfg)
    return cfg, sources


def describe(cfg: CrawlConfig) -> dict[str, Any]:
    """The settings as plain data for the manifest and status; the key only as set/unset."""
    data = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in ("api_key", "out", "state")}
    data["api_key"] = "set" if cfg.api_key else "unset"
    # Storage options may carry secrets: only their keys are shown or written.
    data["storage_option"] = [pair.partition("=")[0] + "=..." for pair in cfg.storage_option]
    return data
