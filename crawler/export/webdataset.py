"""`--format webdataset`: tar shards of `shard_size` samples: `{key}.{jpg|png|webp|...}`, `{key}.json`, `{key}.txt`.

As img2dataset writes them, so `webdataset.WebDataset(pattern).decode("pil")` yields samples with the
keys people expect: the picture under its extension (`jpeg` is written `jpg`), the row as `json`, the
caption (`caption_field`, empty when the image has none) as `txt`. `pattern` is the brace pattern of the
shards written (`DIR/{00000..00012}.tar`), for the user to paste. Each shard is written as
`NNNNN.tar.part` and renamed when sealed, so an interrupted export leaves only complete shards under
their final names. Exporting again into the same folder replaces the earlier shards: once the new ones
are sealed, numbered shards this export did not write are removed (no sample appears twice).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import orjson

from crawler.export import atomic
from crawler.export.images import Images
from crawler.export.rows import caption
from crawler.state.records import Record


class WebDatasetSink:
    def __init__(self, to: Path, shard_size: int = 1000, caption_field: str = "prompt") -> None:
        to.mkdir(parents=True, exist_ok=True)
        self.to = to
        self.shard_size = shard_size
        self.caption_field = caption_field
        self.shards = 0
        self._count = 0
        self._tar: tarfile.TarFile | None = None
        self._part: Path | None = None

    def _open(self) -> tarfile.TarFile:
        if self._tar is None:
            self._part = atomic.part_of(self.to / f"{self.shards:05d}.tar")
            self._tar = tarfile.open(self._part, "w", format=tarfile.USTAR_FORMAT)
        return self._tar

    def write(self, images: Images, record: Record, data: dict[str, Any]) -> None:
        tar = self._open()
        rel = str(record["path"])
        ext = Path(rel).suffix.lstrip(".")
        ext = {"jpeg": "jpg"}.get(ext, ext)
        local = images.local(rel)
        if local is not None:
            tar.add(local, arcname=f"{data['key']}.{ext}", recursive=False)
        else:
            _add(tar, f"{data['key']}.{ext}", images.read(rel))
        _add(tar, f"{data['key']}.json", orjson.dumps(data))
        _add(tar, f"{data['key']}.txt", (caption(data, self.caption_field) or "").encode())
        self._count += 1
        if self._count >= self.shard_size:
            self._seal()

    def _seal(self) -> None:
        if self._tar is not None and self._part is not None:
            self._tar.close()
            atomic.publish(self._part, self._part.with_suffix(""))
            self.shards += 1
            self._tar, self._part, self._count = None, None, 0

    def close(self) -> None:
        self._seal()
        written = {self.to / f"{n:05d}.tar" for n in range(self.shards)}
        for stale in self.to.glob("[0-9][0-9][0-9][0-9][0-9].tar"):
            if stale not in written:
                stale.unlink()

    @property
    def pattern(self) -> str | None:
        """`DIR/{00000..000NN}.tar` (or the one shard's name); None when nothing was written."""
        if self.shards == 0:
            return None
        if self.shards == 1:
            return str(self.to / "00000.tar")
        return str(self.to / f"{{00000..{self.shards - 1:05d}}}.tar")

    def abort(self) -> None:
        if self._tar is not None and self._part is not None:
            self._tar.close()
            self._part.unlink(missing_ok=True)


def _add(tar: tarfile.TarFile, name: str, body: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(body)
    tar.addfile(info, io.BytesIO(body))
