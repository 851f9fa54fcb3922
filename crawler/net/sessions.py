"""The HTTP wiring every caller shares: the API's aiohttp session, the CDN's client, their gates and the retry policy.

    async with open_net(cfg, cdn=True) as net:   # crawl; dry-run, plan and the Ray actors likewise
        net.api, net.api_gate, net.cdn, net.cdn_gate, net.policy, net.bandwidth (None without --max-rate)

Built from the crawl's settings in one place, so a crawl, its dry run, `plan`'s clock read and each Ray
download actor talk to the API and CDN the same way. Sessions are closed when the block ends; an
unwanted side is None. `net` sits below `config`, so the settings it reads are named by a Protocol
(`CrawlConfig` has them all) rather than imported.

HTTPS trusts the CAs of `--ca-file` alone when given, else the system's store as found when the sessions
are made, so `SSL_CERT_FILE` (and `SSL_CERT_DIR`) set at any time before then count. An unreadable
`--ca-file` raises here (ssl.SSLError, OSError); the config checks it up front.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import aiohttp

import crawler
from crawler.net.cdn.client import CdnClient
from crawler.net.limits import ByteGate, HostGate
from crawler.net.retry import RetryPolicy

API_CONNECTIONS = 4  # pages are fetched one after another per chain, at a few per second
CDN_ACCEPT = "image/*,video/*;q=0.9,*/*;q=0.1"


class NetSettings(Protocol):
    """The settings read here (a `CrawlConfig` has them)."""

    @property
    def timeout(self) -> float: ...
    @property
    def retries(self) -> int: ...
    @property
    def backoff_base(self) -> float: ...
    @property
    def backoff_max(self) -> float: ...
    @property
    def api_rps(self) -> float: ...
    @property
    def cdn_rps(self) -> float: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def max_rate(self) -> int | None: ...
    @property
    def ca_file(self) -> str | None: ...
    @property
    def user_agent(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Net:
    policy: RetryPolicy
    api: aiohttp.ClientSession | None = None
    api_gate: HostGate | None = None
    cdn: CdnClient | None = None
    cdn_gate: HostGate | None = None
    bandwidth: ByteGate | None = None  # --max-rate: the CDN bytes this pool may read per second


def retry_policy(cfg: NetSettings) -> RetryPolicy:
    return RetryPolicy(cfg.retries, cfg.backoff_base, cfg.backoff_max)


def _timeout(cfg: NetSettings) -> aiohttp.ClientTimeout:
    # No total: a long page on a slow link is fine as long as bytes keep coming.
    return aiohttp.ClientTimeout(total=None, sock_connect=cfg.timeout, sock_read=cfg.timeout)


def tls_context(cfg: NetSettings) -> ssl.SSLContext | bool:
    """The CAs HTTPS trusts: `--ca-file` alone, or the system's (where SSL_CERT_FILE/SSL_CERT_DIR point).

    True (aiohttp's own verified context) when neither is set, or when both still are what they were
    when aiohttp built that context at its import (`crawler.CA_SETTINGS_AT_IMPORT`, files unchanged);
    otherwise a context of ours, since aiohttp's would miss an SSL_CERT_FILE set or changed after that.
    """
    if cfg.ca_file is not None:
        return _context(cfg.ca_file, (None, None), (crawler.file_stamp(cfg.ca_file), 0))
    env, stamps = now = crawler.ca_settings()
    if env == (None, None) or now == crawler.CA_SETTINGS_AT_IMPORT:
        return True
    return _context(None, env, stamps)


@functools.lru_cache(maxsize=4)
def _context(ca_file: str | None, _env: tuple[str | None, str | None], _stamp: tuple[int, int]) -> ssl.SSLContext:
    # Cached: reading a CA store costs ~40 ms, and open_net runs more than once per command. The
    # environment's values and the file's and folder's mtimes are in the key: a changed one makes a new context.
    return ssl.create_default_context(cafile=ca_file)


def api_session(cfg: NetSettings, tls: ssl.SSLContext | bool | None = None) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=API_CONNECTIONS, ssl=tls if tls is not None else tls_context(cfg))
    return aiohttp.ClientSession(timeout=_timeout(cfg), connector=connector)


def cdn_client(cfg: NetSettings, tls: ssl.SSLContext | bool | None = None,
               bandwidth: ByteGate | None = None) -> CdnClient:
    # Waits for answers and bodies are bounded by the downloader's stall watch (`net.stalls`), not here.
    # Under --max-rate the socket is read at most two of the gate's chunks ahead, so the pace reaches the server.
    return CdnClient(limit=cfg.concurrency, connect_timeout=cfg.timeout,
                     tls=tls if tls is not None else tls_context(cfg),
                     headers={"User-Agent": cfg.user_agent, "Accept": CDN_ACCEPT},
                     **({} if bandwidth is None else {"buffer": 2 * bandwidth.chunk}))


@contextlib.asynccontextmanager
async def open_net(cfg: NetSettings, *, api: bool = True, cdn: bool = False,
                   cdn_rps: float | None = None, share: float = 1.0) -> AsyncIterator[Net]:
    """`cdn_rps`: this pool's share of --cdn-rps (a Ray actor's); the whole rate by default. `share`: the
    part of --max-rate this pool may use (a Ray actor's 1/N), so that all pools together hold the cap."""
    bandwidth = ByteGate(cfg.max_rate * share) if cdn and cfg.max_rate is not None else None
    tls = tls_context(cfg)
    async with contextlib.AsyncExitStack() as stack:
        api_side = await stack.enter_async_context(api_session(cfg, tls)) if api else None
        cdn_side = await stack.enter_async_context(cdn_client(cfg, tls, bandwidth)) if cdn else None
        yield Net(retry_policy(cfg), api_side, HostGate(cfg.api_rps) if api else None,
                  cdn_side, HostGate(cfg.cdn_rps if cdn_rps is None else cdn_rps) if cdn else None, bandwidth)
