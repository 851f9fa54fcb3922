"""Which CivitAI site a request reached, and the browsing levels it may see there (2026 split sites).

Since 2026-04 CivitAI answers as civitai.com, civitai.red and civitai.green. A request names its
site by its Host (`civitai.red` or `red.localhost`, any port) or, for a client that can reach only
127.0.0.1, by a path prefix (`/red/api/v1/images`, registered when `SimConfig.sites` is on). Any
other request reaches the plain simulator, which is no site in particular.

SFW means PG + PG-13 (levels 1 | 2): all that the sites in `SimConfig.sfw_sites`, a restricted
region and (with `anonymous_sfw`) a caller without a key are shown, whatever they ask for. Nothing
here fails: an unknown Host is simply no site.
"""

from __future__ import annotations

from aiohttp import web

from crawler.simulator.config import SITES, SimConfig

SFW_LEVELS = 1 | 2
BLOCKED_MESSAGE = "Access to this content is not available in your region"


def site_of(request: web.Request) -> str | None:
    """The site the request reached: its path prefix, else its Host name; None for neither."""
    prefix = request.match_info.get("site")
    if prefix in SITES:
        return prefix
    host = request.host or ""
    name = host.rsplit(":", 1)[0].lower() if not host.startswith("[") else ""
    for site in SITES:
        if name in (f"civitai.{site}", f"{site}.localhost"):
            return site
    return None


def has_key(request: web.Request) -> bool:
    """An API key sent either way CivitAI takes one (header or `token=`)."""
    return "Authorization" in request.headers or "token" in request.query


def visible_levels(levels: int, request: web.Request, cfg: SimConfig) -> int:
    """The browsing levels the request is shown: `levels`, or only their SFW part (maybe 0: nothing)."""
    sfw = (
        (cfg.sites and site_of(request) in cfg.sfw_sites)
        or cfg.region == "restricted"
        or (cfg.anonymous_sfw and not has_key(request))
    )
    return levels & SFW_LEVELS if sfw else levels
