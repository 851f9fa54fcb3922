"""Pure functions over CivitAI image URLs and request URLs.

Width rewriting, the key an image is stored under, the download allow-list and redaction of secrets:
all structural (split the path), never string search on the whole URL, and all testable offline.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from yarl import URL

#: The sites CivitAI answers as since 2026-04 (`--site`): API root of each.
SITES = {"com": "https://civitai.com/api/v1", "red": "https://civitai.red/api/v1", "green": "https://civitai.green/api/v1"}
#: CivitAI's own image hosts under each site's domain; downloads elsewhere need --allow-host.
CIVITAI_IMAGE_HOSTS = frozenset(f"{name}.civitai.{site}" for name in ("image", "imagecache", "image-b2") for site in SITES)
#: The hosts of the sites themselves (API and pages, not images).
CIVITAI_SITE_HOSTS = frozenset(f"civitai.{site}" for site in SITES)
#: image-b2's media path: `/file/civitai-media-cache/{uuid}[/{options}]/{name}` (no hash1 segment).
B2_MEDIA = ("file", "civitai-media-cache")
#: Options the CDN's options segment is known to take; a segment with any other is not rewritten.
SIZE_OPTIONS = frozenset({"width", "height", "original"})
KNOWN_OPTIONS = SIZE_OPTIONS | {"quality", "anim", "optimized", "transcode", "fit", "format", "blur", "gravity"}

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SECRET_PARAMS = frozenset({"token", "api_key", "apikey", "key"})


class BadImageUrl(ValueError):
    """The URL's options segment is not recognised for sure, so its size cannot be rewritten: fetch it as listed."""


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


def _params_index(segments: list[str]) -> int:
    """Index of the options segment, only where the form is recognised for sure.

    `/{hash1}/{uuid}/{options}/{name}` (image.civitai.com and the seed's form) or
    `/file/civitai-media-cache/{uuid}/{options}/{name}` (image-b2); every option a known `name=value`.
    Anything else -- a bare b2 path whose third-from-last segment is the file's folder, an unknown
    option -- raises BadImageUrl rather than rewriting a segment that is not the options.
    """
    if len(segments) < 4:
        raise BadImageUrl("image URL path has fewer than 4 segments")
    b2 = segments[:2] == list(B2_MEDIA)
    if len(segments) != (5 if b2 else 4) or not _UUID_RE.match(segments[-3]):
        raise BadImageUrl("not a /{hash1}/{uuid}/{options}/{name} or image-b2 media path")
    for option in segments[-2].split(","):
        name, eq, _ = option.partition("=")
        if option and (not eq or name not in KNOWN_OPTIONS):
            raise BadImageUrl(f"unrecognised option {option[:40]!r} in the options segment")
    return len(segments) - 2


def rewrite_size(url: str, width: int | None = None, original: bool = False) -> str:
    """Return `url` asking for `width` pixels (or the original file); other options are kept.

    `original=true` with a width is contradictory (the option clears the size), so setting a width
    removes it, and asking for the original removes any width. Neither argument: `url` unchanged.
    Raises BadImageUrl when the options segment is not recognised for sure (see `_params_index`).
    """
    if width is None and not original:
        return url
    parts = urlsplit(url)
    segments = _segments(parts.path)
    i = _params_index(segments)
    options = [o for o in segments[i].split(",") if o]
    kept = [o for o in options if o.partition("=")[0] not in SIZE_OPTIONS]
    size = "original=true" if original else f"width={width}"
    segments[i] = ",".join([size, *kept])
    return urlunsplit((parts.scheme, parts.netloc, "/" + "/".join(segments), parts.query, ""))


def path_segments(url: str) -> list[str]:
    """The non-empty segments of a URL's path, without its query or fragment, by plain string splitting
    (urlsplit costs more than all the rest of reading an item): what `uuid_in` and a job's expected
    width read, split once per item."""
    path = url.split("?", 1)[0].split("#", 1)[0]
    if "://" in path:
        path = path.split("://", 1)[1].partition("/")[2]
    return [s for s in path.split("/") if s]


def uuid_of(url: str) -> str | None:
    """The per-image uuid (after hash1, or after image-b2's media prefix), or None when the URL has no such form."""
    return uuid_in(path_segments(url))


def uuid_in(segments: list[str]) -> str | None:
    """`uuid_of` for a URL already split by `path_segments`: validated as a uuid, so a URL of any other
    shape simply has none."""
    if len(segments) < 4:
        return None
    candidate = segments[2] if segments[:2] == list(B2_MEDIA) else segments[-3]
    return candidate.lower() if _UUID_RE.match(candidate) else None


def id_from_filename(url: str) -> int | None:
    """The image id when the URL's file name is `{id}.{ext}` (model images carry no `id` field)."""
    try:
        name = _segments(urlsplit(url).path)[-1]
    except (IndexError, ValueError):
        return None
    stem = name.split(".", 1)[0]
    return int(stem) if stem.isdigit() and len(stem) < 19 else None


def host_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def is_allowed(url: str | URL, allowed_hosts: frozenset[str]) -> bool:
    """Only http(s) URLs whose host is on the allow-list; no credentials smuggled in the authority.

    Judged on the `yarl.URL` aiohttp itself connects to (a URL string is parsed as aiohttp parses it),
    so the host checked is the host asked; a downloader passes that parsed URL on to its request, which
    then parses nothing again.
    """
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        if parsed.scheme not in ("http", "https") or "@" in parsed.raw_authority:
            return False
    except (ValueError, TypeError):
        return False
    host = parsed.raw_host  # lower case, IDNA-encoded; a list entry may name a host in Unicode
    return bool(host) and (host in allowed_hosts or parsed.host in allowed_hosts)


def redact(url: str) -> str:
    """`url` with any secret-looking query parameter replaced, for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if not parts.query:
        return url
    query = [(k, "REDACTED" if k.lower() in _SECRET_PARAMS else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def query_of(url: str) -> list[tuple[str, str]]:
    """The query parameters of a `nextPage` URL, minus secrets: we keep our own base and send the key as a header."""
    return [(k, v) for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True) if k.lower() not in _SECRET_PARAMS]
