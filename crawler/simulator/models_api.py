"""`GET /api/v1/models`, `/api/v1/models/{id}` and `/api/v1/model-versions/{id}`, with the API's faults.

Only the list carries image `id`s and filters image levels; detail and version answers leave ids out.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from crawler.simulator.answer import NotFound, json_answer, next_page
from crawler.simulator.catalogue import Catalogue
from crawler.simulator.cursors import Cursors
from crawler.simulator.faults import FaultPicker
from crawler.simulator.items import iso_ms
from crawler.simulator.models import ModelImage, SimModel, SimVersion, shown_images
from crawler.simulator.models_query import parse_model_query
from crawler.simulator.query import ALL_LEVELS, QueryError


class ModelsEndpoint:
    """One per server, serving all three routes; holds nothing per request."""

    __slots__ = ("_catalogue", "_cursors", "_faults", "_error_key")

    def __init__(self, catalogue: Catalogue, cursors: Cursors, faults: FaultPicker, error_key: str = "error") -> None:
        self._error_key = error_key
        self._catalogue = catalogue
        self._cursors = cursors
        self._faults = faults

    async def list(self, request: web.Request) -> web.StreamResponse:
        return json_answer(request, self._faults, lambda: self._page(request), self._error_key)

    async def model(self, request: web.Request) -> web.StreamResponse:
        return json_answer(request, self._faults, lambda: self._model(request), self._error_key)

    async def version(self, request: web.Request) -> web.StreamResponse:
        return json_answer(request, self._faults, lambda: self._version(request), self._error_key)

    def _page(self, request: web.Request) -> bytes:
        query = parse_model_query(request.query)
        chosen = self._catalogue.select_models(query.filters)
        offset = self._cursors.decode_offset(query.cursor) if query.cursor is not None else 0
        origin = f"{request.scheme}://{request.host}"
        levels = query.filters.levels
        items = [render_model(m, origin, "models", levels) for m in chosen[offset : offset + query.limit]]
        following = offset + query.limit
        metadata: dict[str, Any] = {}
        if following < len(chosen):
            metadata = next_page(request, origin, self._cursors.encode_offset(following))
        return orjson.dumps({"items": items, "metadata": metadata})

    def _model(self, request: web.Request) -> bytes:
        model_id = _id(request, "model_id")
        model = self._catalogue.model(model_id)
        if model is None:
            raise NotFound(f"No model with id {model_id}")
        return orjson.dumps(render_model(model, f"{request.scheme}://{request.host}", "model", ALL_LEVELS))

    def _version(self, request: web.Request) -> bytes:
        version_id = _id(request, "version_id")
        found = self._catalogue.model_version(version_id)
        if found is None:
            raise NotFound(f"No model version with id {version_id}")
        model, version = found
        out = render_version(version, f"{request.scheme}://{request.host}", "model-version", ALL_LEVELS)
        out["model"] = {"name": model.name, "type": model.type, "nsfw": model.nsfw}
        return orjson.dumps(out)


def render_model(model: SimModel, origin: str, endpoint: str, levels: int) -> dict[str, Any]:
    return {
        "id": model.id,
        "name": model.name,
        "description": model.description,
        "type": model.type,
        "nsfw": model.nsfw,
        "tags": list(model.tags),
        "creator": {"username": model.username, "image": None},
        "stats": dict(model.stats),
        "modelVersions": [render_version(v, origin, endpoint, levels) for v in model.versions],
    }


def render_version(version: SimVersion, origin: str, endpoint: str, levels: int) -> dict[str, Any]:
    return {
        "id": version.id,
        "modelId": version.model_id,
        "name": version.name,
        "baseModel": version.base_model,
        "createdAt": iso_ms(version.created_ms),
        "downloadUrl": f"{origin}/api/download/models/{version.id}",
        "images": [
            render_image(i, origin, endpoint == "models", endpoint == "model-version")
            for i in shown_images(version, endpoint, levels)
        ],
    }


def render_image(image: ModelImage, origin: str, with_id: bool, with_meta: bool) -> dict[str, Any]:
    """A model image: `nsfwLevel` a number (the level bit), `meta` only where the image has one."""
    item = image.record.item
    out: dict[str, Any] = {"id": item["id"]} if with_id else {}
    out.update(
        url=origin + image.path,
        nsfwLevel=item["browsingLevel"],
        width=item["width"],
        height=item["height"],
        hash=item["hash"],
        type=item["type"],
        minor=False,
        poi=False,
        hasMeta=item["meta"] is not None,
        onSite=False,
    )
    if with_meta and item["meta"] is not None:
        out["meta"] = item["meta"]
    return out


def _id(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise QueryError(f"id must be a positive integer, got {raw!r}")
    return int(raw)
