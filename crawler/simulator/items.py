"""Deterministic generation of simulated CivitAI image records in the `/api/v1/images` shape.

One seeded `random.Random` draws every field, so the same seed always yields the same site.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from crawler.simulator.query import BASE_MODELS

#: Fixed per site, like CivitAI's own `xG1nkqKTMzGDvpLrqFT7WA`.
HASH1 = "xG1nkqKTMzGDvpLrqFT7WA"
#: The newest item of a fresh catalogue (the sample page's first item).
NEWEST_MS = 1744925337225
#: A fresh catalogue spans this much time, however many items it holds.
SPAN_MS = 540 * 86_400_000
#: Models in the world of a small catalogue; a large one has one per `IMAGES_PER_MODEL` images.
MIN_MODELS = 12
IMAGES_PER_MODEL = 25

LEVEL_NAMES = {1: "None", 2: "Soft", 4: "Mature", 8: "X", 16: "X"}
_LEVELS = (1, 2, 4, 8, 16)
# PG about half, so the PG-only default visibly drops the other half.
_LEVEL_WEIGHTS = (50, 20, 15, 10, 5)
_IMAGE_SIZES = ((832, 1216), (1024, 1024), (1216, 832), (512, 768), (768, 512), (896, 1152), (1024, 1536))
_VIDEO_SIZES = ((720, 1280), (1280, 720), (512, 512))
_BASE_MODELS = BASE_MODELS[:5]  # what images are drawn with; the site knows more names
_SAMPLERS = ("DPM++ 2M", "Euler a", "DPM++ 2M Karras", "DPM++ SDE", "Euler")
_BLURHASH_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
# Random bytes map onto the base83 alphabet in one C call (a per-character choice is ~15x slower).
_BLURHASH_TABLE = bytes(ord(_BLURHASH_ALPHABET[i % len(_BLURHASH_ALPHABET)]) for i in range(256))
_WORDS = ("portrait", "castle", "neon", "forest", "cat", "city", "sunset", "robot", "ocean", "dragon",
          "masterpiece", "cinematic", "watercolor", "mountain", "knight", "flowers")
_SYLLABLES = ("ka", "ro", "mi", "zu", "an", "te", "lo", "vi", "ne", "sa", "do", "ri", "qu", "el", "ja")


@dataclass(slots=True)
class Record:
    """One image as the simulator holds it: the API item plus what only the server knows."""

    item: dict[str, Any]  # API shape; `url` and `thumbnail.url` are paths, made absolute per request
    uuid: str
    hidden: bool  # occupies feed offsets but is filtered out after a page is fetched
    gone: int  # 0, or the status (404/410) the CDN answers for a deleted file
    content_type: str
    user_id: int
    model_ids: frozenset[int]
    collected: int  # the "Most Collected" key; CivitAI does not show it in `stats`
    created_ms: int


@dataclass(frozen=True, slots=True)
class World:
    """The fixed cast every record draws from: creators and model versions."""

    users: tuple[tuple[str, int], ...]  # (username, userId)
    versions: tuple[tuple[int, int, str], ...]  # (modelVersionId, modelId, baseModel)

    @staticmethod
    def build(rng: random.Random, models: int = MIN_MODELS) -> World:
        names: set[str] = set()
        while len(names) < 50:
            name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
            names.add(name.capitalize() if rng.random() < 0.5 else name + str(rng.randint(1, 99)))
        users = tuple((name, rng.randint(10_000, 3_000_000)) for name in sorted(names))
        versions: list[tuple[int, int, str]] = []
        model_ids: set[int] = set()
        version_ids: set[int] = set()
        for _ in range(models):
            model_id = _fresh(rng, model_ids, 100_000, 999_999)
            base = rng.choice(_BASE_MODELS)
            for _ in range(rng.randint(1, 4)):
                versions.append((_fresh(rng, version_ids, 100_000, 1_999_999), model_id, base))
        return World(users, tuple(versions))


def _fresh(rng: random.Random, used: set[int], low: int, high: int) -> int:
    """A draw not seen before: a version id shared by two models would make `/model-versions` ambiguous."""
    value = rng.randint(low, high)
    while value in used:
        value = rng.randint(low, high)
    used.add(value)
    return value


def iso_ms(ms: int) -> str:
    """`2025-04-17T21:28:57.225Z`, the API's createdAt form."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


class RecordFactory:
    """Draws records one after another, each newer than the last; posts group a few in a row."""

    def __init__(self, rng: random.Random, world: World, gap_ms: int, gone: float) -> None:
        self._rng = rng
        self._world = world
        self._gap_ms = max(1, gap_ms)
        self._gone = gone
        self._post_left = 0
        self._post_id = 0
        self._user: tuple[str, int] = world.users[0]

    def make(self, image_id: int, created_ms: int, hidden: bool) -> Record:
        rng = self._rng
        if self._post_left <= 0:
            # A post is a few images uploaded together by one creator.
            self._post_left = rng.randint(1, 6)
            self._post_id = rng.randint(1_000_000, 9_999_999)
            self._user = rng.choice(self._world.users)
        self._post_left -= 1
        is_video = rng.random() < 0.08
        width, height = rng.choice(_VIDEO_SIZES if is_video else _IMAGE_SIZES)
        level = rng.choices(_LEVELS, _LEVEL_WEIGHTS)[0]
        image_uuid = uuid4_from(rng.getrandbits(128))
        versions = rng.sample(self._world.versions, rng.choice((0, 1, 1, 1, 2, 3)))
        base_model = versions[0][2] if versions else rng.choice(_BASE_MODELS)
        content_type = _content_type(rng, is_video)
        gone = 0
        if not hidden and rng.random() < self._gone:
            gone = 410 if rng.random() < 0.25 else 404
        item: dict[str, Any] = {
            "id": image_id,
            "url": _url_path(rng, image_uuid, image_id, width, is_video),
            "hash": _blurhash(rng),
            "width": width,
            "height": height,
            "nsfwLevel": LEVEL_NAMES[level],
            "type": "video" if is_video else "image",
            "nsfw": level > 1,
            "browsingLevel": level,
            "createdAt": iso_ms(created_ms),
            "postId": self._post_id,
            "stats": _stats(rng),
            "meta": None if rng.random() < 0.15 else _meta(rng, width, height, versions),
            "username": self._user[0],
            "baseModel": base_model,
            "modelVersionIds": [v[0] for v in versions],
            "thumbnail": _thumbnail(image_uuid, image_id, width, height) if is_video else None,
        }
        return Record(
            item=item,
            uuid=image_uuid,
            hidden=hidden,
            gone=gone,
            content_type=content_type,
            user_id=self._user[1],
            model_ids=frozenset(v[1] for v in versions),
            collected=int(rng.paretovariate(1.3) * 3) - 3,
            created_ms=created_ms,
        )

    def next_gap(self) -> tuple[int, int]:
        """(id step, createdAt step in ms) to the next newer record: ids have gaps, like CivitAI's."""
        return self._rng.randint(1, 60), self._rng.randint(1, 2 * self._gap_ms)


def _content_type(rng: random.Random, is_video: bool) -> str:
    if is_video:
        return "video/mp4"
    roll = rng.random()
    # The file name always says .jpeg; a few files are not JPEG, which clients must tolerate.
    return "image/png" if roll < 0.03 else "image/webp" if roll < 0.06 else "image/jpeg"


def _url_path(rng: random.Random, image_uuid: str, image_id: int, width: int, is_video: bool) -> str:
    ext = "mp4" if is_video else "jpeg"
    roll = rng.random()
    if roll < 0.45:  # the seed's older form
        params, name = f"width={width}", str(image_id)
    elif roll < 0.90:  # today's form: file name is the uuid
        params, name = "original=true", image_uuid
    elif roll < 0.95:
        params, name = ("transcode=true,width=450" if is_video else "anim=false,width=450"), str(image_id)
    else:
        params, name = "original=true,quality=90", image_uuid
    return f"/{HASH1}/{image_uuid}/{params}/{name}.{ext}"


def _thumbnail(image_uuid: str, image_id: int, width: int, height: int) -> dict[str, Any]:
    thumb_width = min(450, width)
    return {
        "url": f"/{HASH1}/{image_uuid}/anim=false,width=450/{image_id}.jpeg",
        "width": thumb_width,
        "height": height * thumb_width // width,
    }


def uuid4_from(bits: int) -> str:
    """A version-4 UUID from 128 seeded bits (uuid.UUID is several times slower)."""
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _blurhash(rng: random.Random) -> str:
    length = rng.choice((28, 36))
    return "U" + rng.randbytes(length - 1).translate(_BLURHASH_TABLE).decode("ascii")


def _stats(rng: random.Random) -> dict[str, int]:
    def heavy(scale: float) -> int:
        return int(rng.paretovariate(1.1) * scale) - int(scale)

    return {
        "cryCount": heavy(2),
        "laughCount": heavy(3),
        "likeCount": heavy(40),
        "dislikeCount": heavy(1) if rng.random() < 0.1 else 0,
        "heartCount": heavy(15),
        "commentCount": heavy(1),
    }


def _meta(rng: random.Random, width: int, height: int, versions: list[tuple[int, int, str]]) -> dict[str, Any]:
    prompt = ", ".join(rng.choices(_WORDS, k=rng.randint(3, 7)))
    return {
        "Size": f"{width}x{height}",
        "seed": rng.randint(0, 2**32 - 1),
        "steps": rng.choice((20, 25, 30, 35, 45)),
        "prompt": prompt,
        "sampler": rng.choice(_SAMPLERS),
        "cfgScale": rng.choice((4, 5, 6, 7, 7.5)),
        "clipSkip": rng.choice((1, 2)),
        "negativePrompt": "lowres, bad anatomy, watermark",
        "civitaiResources": [
            {"type": "checkpoint" if i == 0 else "lora", "modelVersionId": v[0], "modelVersionName": f"v{i + 1}.0"}
            for i, v in enumerate(versions)
        ],
    }
