"""The simulated site's content: every record, the feeds the API pages through, and file bodies.

Pure and deterministic from the seed (no I/O); caches the sorted feeds and filtered selections.
"""

from __future__ import annotations

import hashlib
import random
import zlib
from collections.abc import Mapping
from typing import Any

from crawler.simulator.bodies import BodyMaker, Rendition
from crawler.simulator.config import SimConfig
from crawler.simulator.feeds import Selection, Snapshot
from crawler.simulator.hostile import HostileSet, failed_ids, invalid_count
from crawler.simulator.items import (
    HASH1,
    IMAGES_PER_MODEL,
    MIN_MODELS,
    NEWEST_MS,
    SPAN_MS,
    Record,
    RecordFactory,
    World,
)
from crawler.simulator.models import ModelFilters, SimModel, SimVersion
from crawler.simulator.options import SizeRequest, parse_options
from crawler.simulator.query import Filters, parse_query
from crawler.simulator.shapes import is_audio, listed_size, pick_url, shaped_path, still_video

_FIRST_ID = 12_000_000


class Catalogue:
    """All records, newest first. `items` holds the visible ones in API shape (relative URLs)."""

    def __init__(self, cfg: SimConfig) -> None:
        self._cfg = cfg
        self._rng = random.Random(cfg.seed)
        # A world of at most 300 images keeps the 12 models it always had, so old seeds give the same site.
        world = World.build(self._rng, max(MIN_MODELS, round(cfg.images / IMAGES_PER_MODEL)))
        self._world = world
        total = cfg.images + round(cfg.images * cfg.hidden)
        span_ms = round(cfg.span_days * 86_400_000) or SPAN_MS
        self._factory = RecordFactory(self._rng, world, span_ms // max(1, total), cfg.gone)
        self._bodies = BodyMaker(cfg.seed, cfg.body_bytes)
        self.hostile = HostileSet(cfg.seed, self._bodies)
        records: list[Record] = []
        image_id, created_ms = _FIRST_ID, NEWEST_MS - span_ms
        for hidden in _hidden_flags(self._rng, cfg.images, total - cfg.images):
            id_step, ms_step = self._factory.next_gap()
            image_id, created_ms = image_id + id_step, created_ms + ms_step
            records.append(self._make(image_id, created_ms, hidden))
        records.reverse()
        self._install(records)

    def _make(self, image_id: int, created_ms: int, hidden: bool) -> Record:
        record = self._factory.make(image_id, created_ms, hidden)
        # Chosen by a hash of the id, not the seeded generator, so every other field stays as it was.
        if self._cfg.null_base_model and zlib.crc32(f"base:{image_id}".encode()) % 10_000 < self._cfg.null_base_model * 10_000:
            record.item["baseModel"] = None
        if self._cfg.real_shapes and record.item["type"] == "image" and is_audio(image_id):
            record.item.update(type="audio", url=f"/{HASH1}/{record.uuid}/original=true/{record.uuid}.mp3")
            record.content_type = "audio/mpeg"
        return record

    def _install(self, records: list[Record]) -> None:
        # One reference swap: a server thread sees either the old catalogue or the new one, never a mix.
        self._now = Snapshot(tuple(records), self._cfg.seed, self._world)

    @property
    def items(self) -> list[dict[str, Any]]:
        return self._now.items

    @property
    def newest_ms(self) -> int:
        return self._now.newest_ms

    def record(self, image_id: int) -> Record | None:
        return self._now.by_id.get(image_id)

    def by_uuid(self, image_uuid: str) -> Record | None:
        return self._now.by_uuid.get(image_uuid)

    def add_new(self, n: int) -> list[int]:
        """Add n visible items at the head of the feed (newer ids and createdAt); returns their ids."""
        records = self._now.records
        image_id = records[0].item["id"] if records else _FIRST_ID
        created_ms = records[0].created_ms if records else NEWEST_MS
        fresh: list[Record] = []
        for _ in range(n):
            id_step, ms_step = self._factory.next_gap()
            image_id, created_ms = image_id + id_step, created_ms + ms_step
            fresh.append(self._make(image_id, created_ms, hidden=False))
        fresh.reverse()
        self._install(fresh + list(records))
        return [r.item["id"] for r in fresh]

    def select(self, filters: Filters) -> Selection:
        """The feed for `filters`, hidden records included; cached, as a crawl asks page after page."""
        return self._now.select(filters)

    def rendition(self, record: Record, width: int | None, original: bool, still: bool = False) -> Rendition:
        """What the CDN serves: never upscaled; `original` is the uploaded file itself."""
        served = min(width, record.item["width"]) if width else record.item["width"]
        if still and record.item["type"] == "video":
            return ("still", served)  # `anim=false` only means something for a video: its still frame
        return ("original", 0) if original else ("width", served)

    def body(self, item_id: int, width: int | None, original: bool, still: bool = False) -> tuple[bytes, str]:
        """The exact bytes and Content-Type the CDN serves for this item at this size."""
        record = self._now.by_id.get(item_id)
        if record is None:
            raise KeyError(item_id)
        return self._body(record, width, original, still, cached=True)

    def file(self, record: Record, size: SizeRequest) -> tuple[bytes, str]:
        """What the CDN answers for a URL naming `record` with these size options (cached)."""
        return self._body(record, size.width, size.original, size.still, cached=True)

    def _body(self, record: Record, width: int | None, original: bool, still: bool, cached: bool) -> tuple[bytes, str]:
        rendition = self.rendition(record, width, original, still)
        content_type = "image/jpeg" if rendition[0] == "still" else record.content_type
        make = self._bodies.body if cached else self._bodies.make
        return make(record.item["id"], rendition, content_type), content_type

    def expected(
        self, params: Mapping[str, str] | None = None, width: int | None = None, original: bool = False,
        video_width: int | None = None, per_kind: bool = False,
    ) -> dict[int, str]:
        """id -> sha256 of the body a complete mirror of the `/images` query `params` must hold.

        With `width`, `video_width` (videos) or `original`, each URL is taken as rewritten to that
        size, but a bare image-b2 path as listed; `per_kind`: `width` sizes images only, audio is
        never resized (as the crawler asks). With none, each item's own URL as listed (under
        `real_shapes`, the URL it is listed with). Gone items are left out (see `expected_gone`),
        and so are videos the CDN would answer with a still frame at that size (`expected_stills`).
        """
        if width is not None and original:
            raise ValueError("ask for a width or the original, not both")
        out: dict[int, str] = {}
        for record in self._visible(params):
            size = self._size(record, width, original, video_width, per_kind)
            if record.gone or self._as_still(record, size):
                continue
            data, _ = self._body(record, size.width, size.original, False, cached=False)
            out[record.item["id"]] = hashlib.sha256(data).hexdigest()
        return out

    def expected_stills(
        self, params: Mapping[str, str] | None = None, width: int | None = None, original: bool = False,
        video_width: int | None = None, per_kind: bool = False,
    ) -> set[int]:
        """Ids of videos the CDN answers with one still frame at that size (`real_shapes` only)."""
        return {r.item["id"] for r in self._visible(params)
                if self._as_still(r, self._size(r, width, original, video_width, per_kind))}

    def listed_path(self, record: Record) -> str:
        """The origin-relative URL path `/images` lists for `record`."""
        return shaped_path(record) if self._cfg.real_shapes else str(record.item["url"])

    def _size(self, record: Record, width: int | None, original: bool, video_width: int | None = None,
              per_kind: bool = False) -> SizeRequest:
        # per_kind, as the crawler asks since issue 14: `width` is for images only (a video takes `video_width`,
        # the original or its own URL), audio is never resized. A bare image-b2 path has no options to resize.
        kind = record.item["type"]
        if kind == "video" and video_width is not None:
            width, original = video_width, False
        elif per_kind and kind != "image":
            width, original = None, original and kind == "video"
        if (width is None and not original) or (self._cfg.real_shapes and pick_url(record) == "b2-bare"):
            own = listed_size(self.listed_path(record))
            return SizeRequest(own.width, own.original)  # a listed `anim=false` is the thumbnail's, not ours
        return SizeRequest(width, original)

    def _as_still(self, record: Record, size: SizeRequest) -> bool:
        return self._cfg.real_shapes and not size.original and still_video(record)

    def expected_gone(self, params: Mapping[str, str] | None = None) -> set[int]:
        """Ids the query lists whose files are deleted (the CDN answers 404 or 410)."""
        return {r.item["id"] for r in self._visible(params) if r.gone}

    def hostile_expected(self) -> dict[int, str]:
        """id -> sha256 for the hostile items a correct crawler mirrors (the same on any origin).

        Assumes each URL is fetched as listed (no --width/--original) and redirects within the
        origin are followed; see `hostile.HOSTILE` for what happens to each of the others.
        """
        return self.hostile.expected()

    def hostile_failed_ids(self) -> set[int]:
        """Hostile ids a correct crawler records as failed (1011/1012 only under --max-bytes < 50 MB)."""
        return failed_ids()

    def hostile_invalid_count(self) -> int:
        """Hostile items a correct crawler skips as un-mirrorable (no usable id or url, not an object)."""
        return invalid_count(self.hostile)

    @property
    def models(self) -> list[SimModel]:
        """Every model, each version with all its images (uncapped, every level)."""
        return list(self._now.model_index().models)

    def model(self, model_id: int) -> SimModel | None:
        return self._now.model_index().model(model_id)

    def model_version(self, version_id: int) -> tuple[SimModel, SimVersion] | None:
        return self._now.model_index().version(version_id)

    def select_models(self, filters: ModelFilters) -> list[SimModel]:
        """The models `/models` lists for `filters`, in order, over all pages."""
        return self._now.model_index().select(filters)

    def expected_models(
        self,
        endpoint: str,
        ident: int | None = None,
        params: Mapping[str, str] | None = None,
        width: int | None = None,
        original: bool = False,
    ) -> dict[int | str, str]:
        """key -> sha256 of every image a complete mirror of a model endpoint must hold.

        `endpoint` is "models" (the list, all pages, with `params`), "model" or "model-version"
        (with `ident`; KeyError if unknown). The key is the image id where the answer has it
        (the list) or the URL's file name is `{id}.ext`, else the uuid. `width`/`original` as in
        `expected`; gone images are left out (see `expected_models_gone`).
        """
        if width is not None and original:
            raise ValueError("ask for a width or the original, not both")
        out: dict[int | str, str] = {}
        for key, image in self._now.model_index().shown(endpoint, ident, params):
            record = image.record
            if record.gone or key in out:
                continue
            if width is None and not original:
                own = parse_options(image.path.split("/")[-2])
                data, _ = self._body(record, own.width, own.original, False, cached=False)
            else:
                data, _ = self._body(record, width, original, False, cached=False)
            out[key] = hashlib.sha256(data).hexdigest()
        return out

    def expected_models_gone(
        self, endpoint: str, ident: int | None = None, params: Mapping[str, str] | None = None
    ) -> set[int | str]:
        """Keys a model endpoint shows whose files are deleted (the CDN answers 404 or 410)."""
        return {key for key, image in self._now.model_index().shown(endpoint, ident, params) if image.record.gone}

    def uuid_to_id(self, image_uuid: str) -> int:
        """The id of the visible image with this uuid (KeyError if none): for uuid-keyed model images."""
        record = self._now.by_uuid.get(image_uuid)
        if record is None:
            raise KeyError(image_uuid)
        return int(record.item["id"])

    def _visible(self, params: Mapping[str, str] | None) -> list[Record]:
        filters = parse_query(params or {}).filters
        return [r for r in self.select(filters).records if not r.hidden]


def _hidden_flags(rng: random.Random, visible: int, hidden: int) -> list[bool]:
    """Oldest-first flags; hidden records come in runs so that whole pages can come back empty."""
    flags = [False] * visible
    while hidden > 0:
        run = rng.randint(1, min(hidden, 150))
        at = rng.randint(0, len(flags))
        flags[at:at] = [True] * run
        hidden -= run
    return flags
