"""The producer's source: API pages of images, followed by cursor until the feed says it has ended.

`/api/v1/images` and `/api/v1/models` page by cursor (or by the query of `nextPage` when the cursor is
null: civitai/civitai#981); `/models/{id}` and `/model-versions/{id}` are one answer. Model answers
are flattened into their images, each labelled with the model version it came from. Knows nothing
about files. Ends by returning (the feed ended) or by raising `FeedStopped` with a reason.

Cursors are opaque and backend-specific: after CivitAI switches feed backends a saved cursor is
refused (HTTP 400 "cannot be continued"). A 400 on any page but the chain's first restarts the chain
from its first page with one log line (the done-set makes that cost API pages only), at most
`MAX_RESTARTS` times a run; a 400 on the first page is the query's fault and stays fatal.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp
import orjson
from yarl import URL

from crawler import urls
from crawler.config.settings import IMAGES, USER_AGENT, CrawlConfig, Endpoint
from crawler.feed.levels import LevelWatch, asks_mature, causes
from crawler.logs import Logger
from crawler.net.errors import connection_detail
from crawler.net.limits import HostGate
from crawler.net.retry import Fatal, RequestCounters, Retryable, RetryPolicy, attempts, parse_retry_after
from crawler.stops import Stop

_MAX_PAGE_BYTES = 64 * 1024 * 1024
#: Restarts of one chain from its first page in one run (refused cursors); then the 400 is fatal.
MAX_RESTARTS = 3


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page starts: a cursor, or a whole query taken from `nextPage`. Neither: the first page."""

    cursor: str | None = None
    next_query: tuple[tuple[str, str], ...] | None = None

    def to_record(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "next_query": [list(p) for p in self.next_query] if self.next_query else None}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Position:
        cursor = record.get("cursor")
        query = record.get("next_query")
        # A record from another tool or a damaged one reads as "no next query", never raises.
        pairs = query if isinstance(query, list) and all(isinstance(p, list) and len(p) == 2 for p in query) else None
        return cls(cursor=cursor if isinstance(cursor, str) else None,
                   next_query=tuple((str(k), str(v)) for k, v in pairs) if pairs else None)


@dataclass(frozen=True, slots=True)
class Page:
    number: int  # 1-based, within this run
    items: list[Any]
    next: Position | None  # None: this was the last page
    sources: list[str] | None = None  # per item, for model images: "model:M/version:V"


def source_label(model_id: Any, version_id: Any) -> str:
    return f"model:{model_id}/version:{version_id}"


def _model_images(model: Any) -> Iterator[tuple[Any, str]]:
    if not isinstance(model, dict) or not isinstance(model.get("modelVersions"), list):
        return
    for version in model["modelVersions"]:
        if isinstance(version, dict) and isinstance(version.get("images"), list):
            label = source_label(model.get("id"), version.get("id"))
            for image in version["images"]:
                yield image, label


def _flatten(shape: str, body: dict[str, Any]) -> tuple[list[Any], list[str] | None]:
    if shape == "images":
        return body["items"], None
    if shape == "models":
        pairs = [pair for model in body["items"] for pair in _model_images(model)]
    elif shape == "model":
        pairs = list(_model_images(body))
    else:
        listed = body.get("images")
        images: list[Any] = listed if isinstance(listed, list) else []
        label = source_label(body.get("modelId"), body.get("id"))
        pairs = [(image, label) for image in images]
    return [p[0] for p in pairs], [p[1] for p in pairs]


class FeedStopped(Exception):
    """The feed cannot be followed further; `reason` is a short code, the message says why."""

    def __init__(self, reason: Stop, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class FeedCounters(RequestCounters):
    pages: int = 0
    last_url: str = ""
    restarts: int = 0  # chains restarted from their first page after a refused cursor
    levels: Counter[str] = field(default_factory=Counter)  # listed items by level (None..X, unknown): `status`
    levels_warned: bool = False  # the mature-levels warning is given once per crawl, not per chain


_EXPLAIN = {
    400: "the API rejected the query (HTTP 400)",
    401: "the API refused the key (HTTP 401): check CIVITAI_API_KEY, or unset it to crawl anonymously",
    403: "the API forbids this request (HTTP 403): the key may lack access, or the query needs a key (set CIVITAI_API_KEY)",
    404: "the API has no such endpoint or object (HTTP 404): check --api-base, --model-id, --model-version-id",
    451: "the API is not available in this region (HTTP 451, unavailable for legal reasons)",
}


class Feed:
    def __init__(self, session: aiohttp.ClientSession, api_base: str, params: list[tuple[str, str]],
                 gate: HostGate, policy: RetryPolicy, rng: random.Random, api_key: str | None,
                 user_agent: str, max_empty_pages: int, endpoint: Endpoint = IMAGES,
                 counters: FeedCounters | None = None, log: Callable[[str], None] | None = None) -> None:
        """`log`: where restarts and warnings are told (default: stderr as text)."""
        self.session = session
        self.endpoint = endpoint
        self.url = api_base.rstrip("/") + endpoint.path
        self.params = params
        self.gate = gate
        self.policy = policy
        self.rng = rng
        self.headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.max_empty_pages = max_empty_pages
        self.counters = counters if counters is not None else FeedCounters()  # shared by a plan's chains
        self.log = log or Logger(sys.stderr).info
        self.levels = LevelWatch(endpoint.shape == "images" and asks_mature(params),
                                 causes(urls.host_of(self.url), api_key is not None), self.counters.levels)

    @classmethod
    def from_config(cls, cfg: CrawlConfig, session: aiohttp.ClientSession, gate: HostGate, policy: RetryPolicy,
                    rng: random.Random, counters: FeedCounters | None = None,
                    log: Callable[[str], None] | None = None) -> Feed:
        """The feed a crawl's settings ask for (its endpoint included): crawl and dry run build it here."""
        return cls(session, cfg.api_base, cfg.api_params(), gate, policy, rng, cfg.api_key, USER_AGENT,
                   cfg.max_empty_pages, cfg.endpoint(), counters, log or Logger(sys.stderr, cfg.log_format).info)

    async def pages(self, start: Position | None = None) -> AsyncIterator[Page]:
        position = start or Position()
        seen: set[Position] = {position}
        empty_run = 0
        number = 0
        restarts = 0
        while True:
            try:
                body = await attempts(partial(self._get, self._query(position)), self.policy, self.rng,
                                      pause_host=self.gate.pause, on_retry=self.counters.count_retry)
            except Fatal as e:
                if e.reason != "http-400" or position == Position() or restarts >= MAX_RESTARTS:
                    raise
                restarts += 1
                self.counters.restarts += 1
                self.log(f"the API refused to continue from {_show(position)} ({e.detail}): the feed backend "
                         f"may have changed; restarting this chain from its first page (after page {number}; "
                         "images already mirrored are not fetched again)")
                position, seen, empty_run = Position(), {Position()}, 0
                continue
            items, following = self._parse(body) if self.endpoint.paged else ([], None)
            images, sources = _flatten(self.endpoint.shape, body)
            number += 1
            self.counters.pages += 1
            warning = self.levels.observe(images, last=following is None)
            if warning is not None and not self.counters.levels_warned:
                self.counters.levels_warned = True
                self.log(warning)
            yield Page(number=number, items=images, next=following, sources=sources)
            if following is None:
                return
            if following in seen:
                raise FeedStopped(Stop.CURSOR_REPEATED, f"the API returned a cursor it had already given "
                                  f"({_show(following)}) after page {number}: stopping instead of looping; "
                                  "a later run resumes from the last checkpoint")
            seen.add(following)
            empty_run = empty_run + 1 if not items else 0
            if empty_run >= self.max_empty_pages:
                raise FeedStopped(Stop.EMPTY_PAGES, f"{empty_run} empty pages in a row still carried a cursor (page {number}): "
                                  "giving up (raise --max-empty-pages to go further)")
            position = following

    def _query(self, position: Position) -> list[tuple[str, str]]:
        if position.next_query is not None:
            return list(position.next_query)
        if position.cursor is not None:
            return [*self.params, ("cursor", position.cursor)]
        return list(self.params)

    async def _get(self, query: list[tuple[str, str]]) -> dict[str, Any]:
        await self.gate.acquire()
        self.counters.requests += 1
        try:
            async with self.session.get(self.url, params=query, headers=self.headers, allow_redirects=False) as response:
                self.counters.last_url = urls.redact(str(response.url))
                status = response.status
                self.counters.statuses[status] += 1
                if status in (301, 302, 303, 307, 308):
                    target = urls.host_of(response.headers.get("Location", "")) or "?"
                    raise Fatal("api-redirect", f"the API answered with a redirect (HTTP {status}) to host {target}; "
                                "not followed: check --api-base")
                if status == 429 or status == 408 or status >= 500:
                    raise Retryable(f"http-{status}", retry_after=parse_retry_after(response.headers.get("Retry-After")))
                if status != 200:
                    detail = _EXPLAIN.get(status, f"the API answered HTTP {status}")
                    if 400 <= status < 500:
                        detail += f": {await _error_text(response)}"
                    raise Fatal(f"http-{status}", detail)
                if response.content_length is not None and response.content_length > _MAX_PAGE_BYTES:
                    raise Fatal("page-too-large", f"a page of {response.content_length} bytes")
                raw = await _read_capped(response, _MAX_PAGE_BYTES + 1)
        except aiohttp.ClientPayloadError:
            raise Retryable("truncated", "page body cut short") from None
        except TimeoutError:
            raise Retryable("stalled", "API did not answer in time") from None
        except aiohttp.ClientError as e:
            self.counters.statuses[0] += 1
            asked = urls.redact(str(URL(self.url).update_query(query)))
            if isinstance(e, aiohttp.ClientConnectorCertificateError):  # no retry makes an untrusted CA trusted
                raise Fatal("tls-untrusted", connection_detail(e, asked)) from None
            raise Retryable("connection", connection_detail(e, asked)) from None
        if len(raw) > _MAX_PAGE_BYTES:
            raise Fatal("page-too-large", f"a page over {_MAX_PAGE_BYTES} bytes")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise Retryable("bad-json", f"a page that is not JSON ({len(raw)} bytes)") from None
        if not isinstance(body, dict):
            raise Retryable("bad-page", "an answer that is not a JSON object")
        if self.endpoint.paged and not isinstance(body.get("items"), list):
            raise Retryable("bad-page", "a page without an items list")
        return body

    def _parse(self, body: dict[str, Any]) -> tuple[list[Any], Position | None]:
        metadata = body.get("metadata")
        if not isinstance(metadata, dict):
            return body["items"], None
        cursor = metadata.get("nextCursor")
        if isinstance(cursor, bool) or not (cursor is None or isinstance(cursor, (str, int, float))):
            raise FeedStopped(Stop.API_ERROR, f"the API sent a cursor of an unexpected type ({type(cursor).__name__})")
        if isinstance(cursor, float) and cursor.is_integer():
            cursor = int(cursor)
        if cursor is not None and cursor != "":
            return body["items"], Position(cursor=str(cursor))
        next_page = metadata.get("nextPage")
        if isinstance(next_page, str) and next_page:
            query = urls.query_of(next_page)
            if query:
                return body["items"], Position(next_query=tuple(query))
        return body["items"], None


async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes:
    """The whole body, or its first `cap` bytes (`StreamReader.read(n)` returns after one chunk)."""
    buffer = bytearray()
    async for chunk in response.content.iter_chunked(256 * 1024):
        buffer += chunk
        if len(buffer) >= cap:
            break
    return bytes(buffer)


async def _error_text(response: aiohttp.ClientResponse) -> str:
    try:
        raw = await _read_capped(response, 2000)
        data = orjson.loads(raw)
        message = data.get("error") or data.get("message") if isinstance(data, dict) else None
        text = message if isinstance(message, str) else raw.decode("utf-8", "replace")
    except (orjson.JSONDecodeError, aiohttp.ClientError, UnicodeDecodeError):
        text = "no detail"
    return " ".join(str(text).split())[:200]


def _show(position: Position) -> str:
    return f"cursor {position.cursor!r}" if position.cursor is not None else "a repeated nextPage"
