"""The site's models, built from the catalogue's world: versions, their showcase images, and stats.

A version shows the catalogue images that list its id (oldest first), so the model endpoints,
`/images?modelVersionId=` and `Catalogue.expected_models` all agree on which images exist.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from crawler.simulator.items import HASH1, NEWEST_MS, SPAN_MS, Record, World
from crawler.simulator.query import ALL_LEVELS, PERIODS

MODEL_TYPES = ("Checkpoint", "TextualInversion", "Hypernetwork", "AestheticGradient", "LORA", "Controlnet", "Poses")
MODEL_SORTS = ("Highest Rated", "Most Downloaded", "Newest")
#: Images per version in `/models` and `/models/{id}`, and in `/model-versions/{id}`.
LIST_IMAGES = 20
VERSION_IMAGES = 10
_TYPE_WEIGHTS = (25, 5, 2, 1, 55, 7, 5)
_SUFFIX = {"Checkpoint": "XL", "LORA": "LoRA", "TextualInversion": "Embedding", "Controlnet": "ControlNet"}
_TAGS = ("anime", "character", "style", "concept", "photorealistic", "clothing", "base model", "landscape",
         "fantasy", "sci-fi", "portrait", "architecture")
_NAME_WORDS = ("Neon", "Castle", "Forest", "Dragon", "Ocean", "Sunset", "Robot", "Knight", "Velvet", "Ember")
_SYLLABLES = ("ka", "ro", "mi", "zu", "an", "te", "lo", "vi", "ne", "sa")


@dataclass(frozen=True, slots=True)
class ModelImage:
    """A catalogue image as model endpoints show it: its own URL form, the same in every model."""

    record: Record
    path: str  # relative, like `Record.item["url"]`
    by_id: bool  # file name is `{id}.ext`; else `{uuid}.ext` and the id cannot be recovered from the URL

    @property
    def key(self) -> int | str:
        """What a mirror keys it by when the answer carries no `id`: the id from the file name, or the uuid."""
        return self.record.item["id"] if self.by_id else self.record.uuid


@dataclass(frozen=True, slots=True)
class SimVersion:
    id: int
    model_id: int
    name: str
    base_model: str
    created_ms: int
    images: tuple[ModelImage, ...]  # every visible catalogue image listing this version, oldest first

    def shown(self, levels: int, cap: int) -> tuple[ModelImage, ...]:
        """The first `cap` images whose level is in the `levels` bitmask (filtered, then capped)."""
        return tuple(i for i in self.images if i.record.item["browsingLevel"] & levels)[:cap]


@dataclass(frozen=True, slots=True)
class SimModel:
    id: int
    name: str
    description: str
    type: str
    tags: tuple[str, ...]
    username: str
    stats: Mapping[str, int | float]
    created_ms: int  # its newest version's: what "Newest" and `period` go by
    nsfw: bool  # some image of it is R or above
    versions: tuple[SimVersion, ...]  # newest first, as the API lists them


@dataclass(frozen=True, slots=True)
class ModelFilters:
    """Which models `/models` lists, in what order. `levels` also filters each version's images."""

    query: str | None = None  # lower-cased substring of the name
    tag: str | None = None  # lower-cased
    username: str | None = None  # lower-cased
    types: frozenset[str] | None = None
    sort: str = "Highest Rated"
    period: str = "AllTime"
    levels: int = 1  # PG only unless nsfw=true


def build_models(world: World, records: Iterable[Record], seed: int) -> tuple[SimModel, ...]:
    """Every model of `world`, its versions showing the visible `records` that list them."""
    shown: dict[int, list[Record]] = {}
    for record in records:
        if not record.hidden:
            for version_id in record.item["modelVersionIds"]:
                shown.setdefault(version_id, []).append(record)
    grouped: dict[int, list[tuple[int, str]]] = {}
    for version_id, model_id, base in world.versions:
        grouped.setdefault(model_id, []).append((version_id, base))
    return tuple(_model(model_id, versions, shown, world, seed) for model_id, versions in grouped.items())


def select_models(models: Iterable[SimModel], f: ModelFilters, newest_ms: int) -> list[SimModel]:
    days = PERIODS[f.period]
    since = newest_ms - days * 86_400_000 if days else None
    chosen = [m for m in models if _matches(m, f, since)]
    if f.sort == "Newest":
        return sorted(chosen, key=lambda m: (-m.created_ms, -m.id))
    if f.sort == "Most Downloaded":
        return sorted(chosen, key=lambda m: (-m.stats["downloadCount"], -m.id))
    return sorted(chosen, key=lambda m: (-m.stats["rating"], -m.stats["ratingCount"], -m.id))


def shown_images(version: SimVersion, endpoint: str, levels: int = ALL_LEVELS) -> tuple[ModelImage, ...]:
    """What `endpoint` ("models", "model", "model-version") shows of a version; only the list filters levels."""
    if endpoint == "model-version":
        return version.shown(ALL_LEVELS, VERSION_IMAGES)
    return version.shown(levels if endpoint == "models" else ALL_LEVELS, LIST_IMAGES)


def _matches(model: SimModel, f: ModelFilters, since_ms: int | None) -> bool:
    if f.query is not None and f.query not in model.name.lower():
        return False
    if f.tag is not None and f.tag not in model.tags:
        return False
    if f.username is not None and model.username.lower() != f.username:
        return False
    if f.types is not None and model.type not in f.types:
        return False
    if since_ms is not None and model.created_ms < since_ms:
        return False
    # Without nsfw=true the list hides models with no image safe to show, as CivitAI documents.
    return f.levels == ALL_LEVELS or any(v.shown(f.levels, 1) for v in model.versions)


def _model(
    model_id: int, versions: list[tuple[int, str]], shown: dict[int, list[Record]], world: World, seed: int
) -> SimModel:
    # Its own generator: a model's name and stats do not change when images are added.
    rng = random.Random(f"{seed}:model:{model_id}")
    kind = rng.choices(MODEL_TYPES, _TYPE_WEIGHTS)[0]
    coined = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
    name = f"{rng.choice(_NAME_WORDS)} {coined} {_SUFFIX.get(kind, kind)}"
    created_ms = NEWEST_MS - rng.randint(SPAN_MS // 10, SPAN_MS)
    made: list[SimVersion] = []
    for n, (version_id, base) in enumerate(versions, start=1):
        records = sorted(shown.get(version_id, ()), key=lambda r: r.item["id"])
        images = tuple(_image(r, seed) for r in records)
        made.append(SimVersion(version_id, model_id, f"v{n}.0", base, created_ms, images))
        created_ms = min(NEWEST_MS, created_ms + rng.randint(1, 60) * 86_400_000)
    newest_first = tuple(reversed(made))
    stats: dict[str, int | float] = {
        "downloadCount": int(rng.paretovariate(1.2) * 500),
        "favoriteCount": int(rng.paretovariate(1.3) * 50),
        "thumbsUpCount": int(rng.paretovariate(1.3) * 80),
        "commentCount": rng.randint(0, 200),
        "ratingCount": rng.randint(0, 500),
        "rating": round(rng.uniform(3.5, 5.0), 2),
    }
    return SimModel(
        id=model_id,
        name=name,
        description=f"<p>{name}: a {kind} for {versions[0][1]}.</p>",
        type=kind,
        tags=tuple(sorted(rng.sample(_TAGS, rng.randint(1, 4)))),
        username=rng.choice(world.users)[0],
        stats=stats,
        created_ms=newest_first[0].created_ms,
        nsfw=any(i.record.item["browsingLevel"] >= 4 for v in made for i in v.images),
        versions=newest_first,
    )


def _image(record: Record, seed: int) -> ModelImage:
    """One URL form per image (by a hash of its id), so it looks the same under every model."""
    item = record.item
    ext = "mp4" if item["type"] == "video" else "jpeg"
    roll = zlib.crc32(f"{seed}:model-image:{item['id']}".encode()) % 5
    if roll == 0:  # the older form: file name is the uuid, so the id is lost
        return ModelImage(record, f"/{HASH1}/{record.uuid}/width={item['width']}/{record.uuid}.{ext}", False)
    params = "original=true" if roll < 3 else f"width={item['width']}"
    return ModelImage(record, f"/{HASH1}/{record.uuid}/{params}/{item['id']}.{ext}", True)
