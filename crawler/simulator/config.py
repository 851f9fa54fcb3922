"""Configuration of the CivitAI simulator: catalogue shape and injected faults.

Both are frozen dataclasses built once; every probability is per request and checked up front.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, fields

CURSOR_STYLES = ("offset", "number", "feed")
# How `/images` misbehaves for a hostile-input suite (see `modes.py`); "normal" is the real API.
API_MODES = ("normal", "no-items", "cursor-loop", "empty-forever", "401", "403", "451", "redirect", "not-json")
#: The sites CivitAI answers as since 2026-04 (civitai.com / .red / .green); see `sites.py`.
SITES = ("com", "red", "green")
#: open: every level; restricted: clamped to PG + PG-13; blocked: every API request answers 451.
REGIONS = ("open", "restricted", "blocked")
#: The key of a 4xx JSON body: `{"error": ...}` before 2026-08, `{"message": ...}` since.
ERROR_BODIES = ("error", "message")


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Per-request fault probabilities (0.0 = never) and the knobs that shape each fault."""

    api_429: float = 0.0
    api_503: float = 0.0
    api_500: float = 0.0
    api_malformed: float = 0.0
    api_reset: float = 0.0
    cdn_429: float = 0.0
    cdn_500: float = 0.0
    cdn_reset: float = 0.0
    cdn_truncate: float = 0.0
    cdn_stall: float = 0.0
    cdn_html: float = 0.0
    duplicate: float = 0.0
    null_cursor: float = 0.0
    retry_after: float = 1.0
    retry_after_http_date: bool = False
    stall_seconds: float = 30.0
    latency_ms: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in PROBABILITIES and not 0.0 <= value <= 1.0:
                raise ValueError(f"FaultConfig.{f.name} must be within 0..1, got {value!r}")
        for name in ("retry_after", "stall_seconds", "latency_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"FaultConfig.{name} must not be negative")
        # Faults of one kind share a single roll, so their sum is the chance of any fault at all.
        for group in (API_FAULTS, CDN_FAULTS):
            total = sum(getattr(self, name) for name in group)
            if total > 1.0 + 1e-9:
                raise ValueError(f"fault probabilities {', '.join(group)} sum to {total:g} > 1")


API_FAULTS = ("api_429", "api_503", "api_500", "api_malformed", "api_reset")
CDN_FAULTS = ("cdn_429", "cdn_500", "cdn_reset", "cdn_truncate", "cdn_stall", "cdn_html")
PROBABILITIES = frozenset((*API_FAULTS, *CDN_FAULTS, "duplicate", "null_cursor"))


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What the simulated site holds and how it misbehaves; the same config gives the same site."""

    images: int = 3000
    seed: int = 1
    body_bytes: int = 4096
    hidden: float = 0.0
    gone: float = 0.0
    cursor_style: str = "offset"
    faults: FaultConfig = field(default_factory=FaultConfig)
    host: str = "127.0.0.1"
    port: int = 0
    api_mode: str = "normal"
    hostile_items: bool = False  # the first page of every query also lists `hostile.HOSTILE`
    # The options below are off by default: each reproduces a 2026 behaviour of the real API.
    depth_cap: int = 0  # /images lists at most this many feed positions of one query, then no nextCursor
    stale_cursors: bool = False  # remember issued cursors: after `switch_backend()` older ones answer 400
    sites: bool = False  # answer as com/red/green by Host name or a `/{site}` path prefix (sites.py)
    sfw_sites: tuple[str, ...] = ("green",)  # with `sites`: these sites list PG + PG-13 only
    anonymous_sfw: bool = False  # callers without a key get PG + PG-13 only, whatever they ask
    region: str = "open"  # one of REGIONS
    error_body: str = "error"  # one of ERROR_BODIES (the stale-cursor 400 always says "message")
    real_shapes: bool = False  # items take the shapes recorded in 2026 (shapes.py)
    span_days: float = 0.0  # createdAt spread over this many days up to the newest; 0 = the usual 540
    null_base_model: float = 0.0  # this share of images has `baseModel` null (matched by no `baseModels`)
    # HTTPS for the API and the CDN, with a test CA made at start (tls.py); its PEM goes to `tls_ca_file`,
    # or to a temporary file removed at stop when that is "".
    tls: bool = False
    tls_ca_file: str = ""

    def __post_init__(self) -> None:
        if self.images < 0:
            raise ValueError("SimConfig.images must not be negative")
        if self.body_bytes < 64:
            raise ValueError("SimConfig.body_bytes must be at least 64")
        if not 0.0 <= self.hidden <= 10.0:
            raise ValueError("SimConfig.hidden must be within 0..10 (a fraction of the visible items)")
        if not 0.0 <= self.gone <= 1.0:
            raise ValueError("SimConfig.gone must be within 0..1")
        if self.cursor_style not in CURSOR_STYLES:
            raise ValueError(f"SimConfig.cursor_style must be one of {', '.join(CURSOR_STYLES)}")
        if self.api_mode not in API_MODES:
            raise ValueError(f"SimConfig.api_mode must be one of {', '.join(API_MODES)}")
        if self.span_days < 0:
            raise ValueError("SimConfig.span_days must not be negative (0 = the usual span)")
        if not 0.0 <= self.null_base_model <= 1.0:
            raise ValueError("SimConfig.null_base_model must be within 0..1")
        if self.depth_cap < 0:
            raise ValueError("SimConfig.depth_cap must not be negative (0 = no cap)")
        if not set(self.sfw_sites) <= set(SITES):
            raise ValueError(f"SimConfig.sfw_sites must be among {', '.join(SITES)}")
        if self.region not in REGIONS:
            raise ValueError(f"SimConfig.region must be one of {', '.join(REGIONS)}")
        if self.error_body not in ERROR_BODIES:
            raise ValueError(f"SimConfig.error_body must be one of {', '.join(ERROR_BODIES)}")
        if self.tls_ca_file and not self.tls:
            raise ValueError("SimConfig.tls_ca_file needs tls=True")
        if not 0 <= self.port <= 65535:
            raise ValueError("SimConfig.port must be within 0..65535")
        require_loopback(self.host)


def require_loopback(host: str) -> None:
    """Refuse to serve anywhere but this machine: the simulator is a test fixture, not a site."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"simulator host must be a loopback IP address, got {host!r}")
