"""The gallery and image pages as plain HTML strings: usable without JavaScript, every field escaped.

Every value from the manifest goes through `e()` (CivitAI prompts contain HTML); URLs built here only
hold escaped keys and URL-encoded queries. The page loads only `/static/` files of this server.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote

import orjson

from crawler import normalise as N
from crawler.serve.index import item_of
from crawler.serve.query import EXCLUDED, SORTS, TYPES, Query

BLUR_ABOVE = 1  # default: blur what is above PG-13 (rank 1, "Soft")


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def level_name(rank: int) -> str:
    return N.NSFW_LEVELS[rank] if 0 <= rank < len(N.NSFW_LEVELS) else "unknown"


@dataclass(frozen=True, slots=True)
class Card:
    key: str
    level: int
    excluded: bool
    fields: dict[str, Any]  # export's row of the image


def layout(title: str, body: str, token: str, head: str = "") -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="csrf-token" content="{e(token)}"><title>{e(title)} · civitai-mirror</title>'
            f'<link rel="stylesheet" href="/static/style.css">{head}</head>'
            f'<body class="blur-on" data-blur-above="{BLUR_ABOVE}"><header><nav><a href="/">Gallery</a> '
            f'<a href="/status">Status</a></nav><label class="blurpick">Blur above '
            f'<select id="blur">{_blur_options()}</select></label></header><main>{body}</main>'
            f'<script src="/static/app.js" defer></script></body></html>')


def _blur_options() -> str:
    labels = {-1: "everything", 0: "PG", 1: "PG-13", 2: "R", 3: "X (nothing known)"}
    return "".join(f'<option value="{r}"{" selected" if r == BLUR_ABOVE else ""}>{e(label)}</option>'
                   for r, label in labels.items())


def _select(name: str, options: Iterable[tuple[str, str]], chosen: str) -> str:
    inner = "".join(f'<option value="{e(v)}"{" selected" if v == chosen else ""}>{e(label)}</option>' for v, label in options)
    return f'<select name="{name}" id="f-{name}">{inner}</select>'


def _filters(query: Query, base_models: list[str]) -> str:
    levels = "".join(
        f'<label><input type="checkbox" name="level" value="{e(n)}"{" checked" if r in query.levels else ""}>{e(n)}</label>'
        for r, n in enumerate(N.NSFW_LEVELS))
    def number(name: str, value: int, label: str) -> str:
        return f'<label>{label} <input type="number" min="0" name="{name}" value="{value or ""}" class="short"></label>'
    return (
        f'<form method="get" action="/" id="search" role="search">'
        f'<input type="search" name="q" id="q" value="{e(query.q)}" placeholder="prompt, user, model, tag" autocomplete="off">'
        f'{_select("sort", [(s, s) for s in SORTS], query.sort)}'
        f'{_select("type", [("", "any type")] + [(t, t) for t in TYPES], query.type)}'
        f'{_select("base_model", [("", "any base model")] + [(b, b) for b in base_models], query.base_model)}'
        f'<span class="levels">{levels}</span>'
        f'{number("min_width", query.min_width, "min width")}{number("min_height", query.min_height, "min height")}'
        f'{number("min_reactions", query.min_reactions, "min reactions")}'
        f'<label>from <input type="date" name="since" value="{e(query.since or "")}"></label>'
        f'<label>to <input type="date" name="until" value="{e(query.until or "")}"></label>'
        f'{_select("excluded", [(x, f"excluded: {x}") for x in EXCLUDED], query.excluded)}'
        f'<button type="submit">Search</button></form>')


def card(c: Card) -> str:
    f = c.fields
    key = quote(c.key, safe="")
    blurred = " blurred" if c.level > BLUR_ABOVE else ""
    media = (f'<img src="/thumb/{key}" loading="lazy" alt="{e((f.get("prompt") or "")[:200])}" '
             f'width="320">')
    badge = '<span class="badge">excluded</span>' if c.excluded else ""
    return (f'<figure class="card{blurred}{" excluded" if c.excluded else ""}" data-key="{e(c.key)}" '
            f'data-level="{c.level}"><a href="/image/{key}" class="open">{media}</a>'
            f'<figcaption><label><input type="checkbox" name="key" value="{e(c.key)}"> select</label> {badge}'
            f'<span class="who">{e(f.get("username") or "")}</span> <span class="lvl">{e(level_name(c.level))}</span> '
            f'<span class="react">♥ {e(f.get("reactions") or 0)}</span>'
            f'<span class="prompt">{e((f.get("prompt") or "")[:140])}</span></figcaption></figure>')


def gallery(query: Query, cards: list[Card], next_after: tuple[float, int] | None, token: str,
            base_models: list[str], total: int) -> str:
    grid = "".join(card(c) for c in cards) or '<p class="empty">No images match.</p>'
    pager = []
    if query.after is not None:
        pager.append(f'<a href="/?{e(query.params(after=None))}" id="first">First page</a>')
    if next_after is not None:
        pager.append(f'<a href="/?{e(query.params(after=next_after))}" id="next" rel="next">Next page</a>')
    body = (f'{_filters(query, base_models)}<p class="count" id="count">{total} images in the mirror; '
            f'showing {len(cards)}</p>'
            f'<form method="post" action="/exclude" id="curate"><input type="hidden" name="token" value="{e(token)}">'
            f'<input type="hidden" name="back" value="/?{e(query.params())}">'
            f'<div class="actions"><button name="action" value="exclude" id="exclude">Exclude selected from exports</button> '
            f'<button name="action" value="include" id="include">Include selected again</button></div>'
            f'<div id="grid" class="grid">{grid}</div></form><nav id="pager" class="pager">{" ".join(pager)}</nav>')
    return layout("Gallery", body, token)


def image_page(key: str, record: dict[str, Any], fields: dict[str, Any], sources: list[str], level: int,
               excluded: bool, token: str) -> str:
    k = quote(key, safe="")
    is_video = fields.get("type") == "video" or str(fields.get("content_type") or "").startswith("video/")
    media = (f'<video src="/media/{k}" controls loop playsinline preload="metadata"></video>' if is_video
             else f'<img src="/media/{k}" alt="{e((fields.get("prompt") or "")[:200])}">')
    blurred = " blurred" if level > BLUR_ABOVE else ""
    rows = "".join(f'<tr><th>{e(name)}</th><td class="f-{e(name)}">{e(_show(value))}</td></tr>'
                   for name, value in fields.items() if name != "meta_json")
    extra = "".join(f'<tr><th>{e(name)}</th><td>{e(_show(value))}</td></tr>'
                    for name, value in record.items() if name not in ("item",) and name not in fields)
    meta = N.meta(item_of(record))
    meta_json = orjson.dumps(meta, option=orjson.OPT_INDENT_2).decode() if meta is not None else "null"
    ident = fields.get("id")
    original = (f'<a href="https://civitai.com/images/{e(ident)}" rel="noreferrer noopener" target="_blank">'
                f'open on CivitAI</a>') if isinstance(ident, int) else ""
    action, label = ("include", "Include in exports again") if excluded else ("exclude", "Exclude from exports")
    curate = (f'<form method="post" action="/exclude" class="one"><input type="hidden" name="token" value="{e(token)}">'
              f'<input type="hidden" name="key" value="{e(key)}"><input type="hidden" name="back" value="/image/{k}">'
              f'<button name="action" value="{action}" id="toggle-exclusion">{label}</button></form>')
    body = (f'<article class="image"><div class="media{blurred}" data-level="{level}">{media}</div>'
            f'<div class="info"><p>{original} · <a href="/media/{k}">file</a>'
            f'{" · <strong>excluded from exports</strong>" if excluded else ""}</p>{curate}'
            f'<h2>Sources</h2><ul class="sources">{"".join(f"<li>{e(s)}</li>" for s in sources) or "<li>images feed</li>"}</ul>'
            f'<h2>Fields</h2><table class="fields">{rows}{extra}</table>'
            f'<h2>meta</h2><pre id="meta">{e(meta_json)}</pre></div></article>')
    return layout(f"Image {key}", body, token)


def _show(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    return "" if value is None else str(value)


def error_page(status: int, message: str, token: str) -> str:
    return layout(f"{status}", f'<p class="error">{e(message)}</p>', token)
