"""The CDN's `params` path segment (`width=450`, `original=true,quality=90`, ...) read as a request.

Only the size options matter to the simulator; everything else (`anim`, `quality`, ...) is ignored,
except `anim=false` on a video, which asks for a still frame (a video's thumbnail).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SizeRequest:
    width: int | None = None
    original: bool = False
    still: bool = False


def parse_options(segment: str) -> SizeRequest:
    """Raises ValueError for a width that is not a positive integer."""
    width: int | None = None
    original = False
    still = False
    for option in segment.split(","):
        name, _, value = option.partition("=")
        if name == "width":
            if not value.isdigit() or int(value) <= 0:
                raise ValueError(f"bad width {value!r}")
            width = int(value)
        elif name == "original":
            original = value.lower() == "true"
        elif name == "anim":
            still = value.lower() == "false"
    # `original=true` clears any size: the uploaded file is served as is.
    return SizeRequest(width=None if original else width, original=original, still=still)
