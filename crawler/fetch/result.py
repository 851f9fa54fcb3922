"""What became of one image download: the typed result every executor hands back to the crawl.

Small and picklable, so the same value travels back from Ray download actors. A full disk or a disk
that refuses writes is not the image's failure but the crawl's: those come back as `disk-full` /
`disk-error` for the crawl to stop on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["done", "failed", "gone", "disk-full", "disk-error"]


# Not frozen, like `Job`: a frozen dataclass's __init__ costs several times more, and one is built per
# image. Nothing changes a result once made.
@dataclass(slots=True)
class Fetched:
    status: Status
    path: str | None = None  # done: relative to the mirror root
    sha256: str | None = None
    bytes: int = 0
    content_type: str | None = None
    reason: str | None = None  # failed: why (http-500, truncated, ...)
    error: str | None = None  # failed, gone, disk-*: the detail shown to people
