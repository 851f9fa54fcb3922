"""The models of one catalogue snapshot: lookups by id, the `/models` selection, and what each
model endpoint shows -- the one place both the endpoints and `Catalogue.expected_models` ask.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from crawler.simulator.items import Record, World
from crawler.simulator.models import ModelFilters, ModelImage, SimModel, SimVersion, build_models, select_models, shown_images
from crawler.simulator.models_query import parse_model_query

ENDPOINTS = ("models", "model", "model-version")


class ModelIndex:
    """Built once per snapshot, on first use: most crawls never ask for models."""

    __slots__ = ("models", "_by_id", "_versions", "_newest_ms")

    def __init__(self, world: World, records: Iterable[Record], seed: int, newest_ms: int) -> None:
        self.models = build_models(world, records, seed)
        self._by_id = {m.id: m for m in self.models}
        self._versions = {v.id: (m, v) for m in self.models for v in m.versions}
        self._newest_ms = newest_ms

    def model(self, model_id: int) -> SimModel | None:
        return self._by_id.get(model_id)

    def version(self, version_id: int) -> tuple[SimModel, SimVersion] | None:
        return self._versions.get(version_id)

    def select(self, filters: ModelFilters) -> list[SimModel]:
        return select_models(self.models, filters, self._newest_ms)

    def shown(
        self, endpoint: str, ident: int | None = None, params: Mapping[str, str] | None = None
    ) -> list[tuple[int | str, ModelImage]]:
        """(key, image) for every image `endpoint` shows, over all pages; raises KeyError for an unknown id.

        The key is the image id where the answer carries one (the list) or the file name holds it,
        else the uuid. An image under two versions or models appears once per place it is shown.
        """
        if endpoint == "models":
            filters = parse_model_query(params or {}).filters
            return [
                (i.record.item["id"], i)
                for m in self.select(filters)
                for v in m.versions
                for i in shown_images(v, endpoint, filters.levels)
            ]
        if ident is None:
            raise ValueError(f"endpoint {endpoint!r} needs an id")
        if endpoint == "model":
            model = self.model(ident)
            if model is None:
                raise KeyError(ident)
            return [(i.key, i) for v in model.versions for i in shown_images(v, endpoint)]
        if endpoint == "model-version":
            found = self.version(ident)
            if found is None:
                raise KeyError(ident)
            return [(i.key, i) for i in shown_images(found[1], endpoint)]
        raise ValueError(f"endpoint must be one of {', '.join(ENDPOINTS)}")
