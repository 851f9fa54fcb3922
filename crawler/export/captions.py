"""`--format captions`: the layout LoRA/fine-tuning tools read (kohya-ss style), `{key}.{ext}` beside `{key}.txt`.

Images are hard-linked when the folder is on the mirror's filesystem (no copy, no extra space; the
mirror's files are never opened for writing), copied otherwise. Images without the caption field are
left out and counted. Each file appears complete (`.part`, then renamed); an image already exported
is not copied again, so an interrupted export is resumed by running it again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from crawler.export import atomic
from crawler.export.images import Images
from crawler.export.rows import caption
from crawler.state.records import Record


class CaptionsSink:
    def __init__(self, to: Path, field: str = "prompt") -> None:
        to.mkdir(parents=True, exist_ok=True)
        self.to = to
        self.field = field
        self.linked = 0
        self.copied = 0
        self.uncaptioned = 0

    def write(self, images: Images, record: Record, data: dict[str, Any]) -> None:
        text = caption(data, self.field)
        if text is None:
            self.uncaptioned += 1
            return
        rel = str(record["path"])
        target = self.to / f"{data['key']}{Path(rel).suffix}"
        if not target.exists():
            self._place(images, rel, target)
        atomic.write_bytes(self.to / f"{data['key']}.txt", (text + "\n").encode())

    def _place(self, images: Images, rel: str, target: Path) -> None:
        source = images.local(rel)
        if source is not None:
            try:
                os.link(source, target)
                self.linked += 1
                return
            except OSError:  # another filesystem, or links refused: copy
                atomic.copy_file(source, target)
        else:
            atomic.write_bytes(target, images.read(rel))
        self.copied += 1

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass
