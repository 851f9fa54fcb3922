"""Where images go, as the user wrote it: a local directory (plain path or file://) or an fsspec URL.

Pure parsing, shared by the settings (validation), the stores and the commands."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_CHAINED = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*::")  # simplecache::s3://..., not a path holding "::"


def is_remote(url: str) -> bool:
    """s3://, gs://, memory:// ... are object stores; a plain path or file:// URL is a local directory."""
    if "://" in url and _CHAINED.match(url):
        return True  # a chained fsspec URL (simplecache::s3://...)
    match = _SCHEME.match(url)
    return bool(match) and match.group(1).lower() not in ("file", "local")


def local_path(url: str) -> Path:
    if is_remote(url):
        raise ValueError(f"{url} is not a local path")
    match = _SCHEME.match(url)
    if match:
        # file:///abs is /abs, file://localhost/abs too; fsspec reads file://rel/path as a relative path.
        rest = unquote(url[match.end():])
        if rest.startswith("localhost/"):
            rest = rest[len("localhost"):]
        return Path(rest).expanduser()
    return Path(url).expanduser()


def parse_storage_options(pairs: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings as fsspec keyword arguments: true/false, numbers and JSON become values,
    dotted keys nest (`client_kwargs.region_name=x` -> {"client_kwargs": {"region_name": "x"}})."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            # The text itself is not shown: a mistyped option may be a secret.
            raise ValueError(f"option {len(options) + 1} is not KEY=VALUE (a key, '=', then the value)")
        target = options
        *parents, leaf = key.split(".")
        for part in parents:
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"{key}: {part} is already set to a value")
            target = child
        target[leaf] = _value(raw)
    return options


def _value(raw: str) -> Any:
    text = raw.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if re.fullmatch(r"-?(0|[1-9]\d*)", text):  # not "007": a leading zero says it is text
        return int(text)
    if re.fullmatch(r"-?(0|[1-9]\d*)\.\d+", text):
        return float(text)
    if text[:1] in ("{", "["):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ValueError("a value that starts like JSON does not parse") from None
    return raw
