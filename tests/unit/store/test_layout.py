"""store/layout.py: where an image lives is decided by its key alone, and never escapes images/."""

from __future__ import annotations

import pytest

from crawler.store import layout


@pytest.mark.parametrize("key, folder", [
    (0, "images/000/000"), (999, "images/000/000"), (1_000, "images/000/001"), (12_345_678, "images/012/345"),
    (999_999_999, "images/999/999"), (1_000_000, "images/001/000"), (1_234_567_890, "images/1234/567"),
])
def test_ids_are_split_by_millions_then_thousands(key, folder):
    assert layout.shard_dir(key) == folder


def test_no_folder_holds_more_than_a_thousand_entries():
    # 3M consecutive ids: every leaf holds 1,000 files, every middle folder 1,000 leaves.
    leaves = {}
    for key in range(0, 3_000_000, 7):
        leaves.setdefault(layout.shard_dir(key), 0)
        leaves[layout.shard_dir(key)] += 1
    assert max(leaves.values()) <= 1_000
    middles = {}
    for leaf in leaves:
        parent = leaf.rsplit("/", 1)[0]
        middles[parent] = middles.get(parent, 0) + 1
    assert max(middles.values()) <= 1_000 and len(middles) == 3


def test_uuid_keys_use_their_first_hex_digits():
    key = "ab12cd34-0000-4000-8000-000000000000"
    assert layout.relative_path(key, "image/png") == f"images/u/ab/12/{key}.png"


@pytest.mark.parametrize("key", [-1, "../../etc/passwd", "AB12CD34-0000-4000-8000-000000000000", "x", ""])
def test_keys_that_could_escape_or_collide_are_refused(key):
    with pytest.raises(ValueError) as refused:
        layout.shard_dir(key)
    assert repr(key) in str(refused.value) or str(key) in str(refused.value)  # the message names the key


@pytest.mark.parametrize("content_type, ext", [
    ("image/jpeg", "jpeg"), ("image/JPEG; charset=binary", "jpeg"), ("image/pjpeg", "jpeg"), ("video/mp4", "mp4"),
    ("image/x-weird/../../x", "xweirdx"), ("image/", "bin"), (None, "bin"), ("image/svg+xml", "svgxml"),
    ("image/x-portable-anymap", "xportabl"),  # at most 8 characters
])
def test_extension_comes_from_the_content_type_and_is_always_a_plain_word(content_type, ext):
    assert layout.extension_for(content_type) == ext
    path = layout.relative_path(42, content_type)
    assert path == f"images/000/000/42.{ext}" and ".." not in path.split("/")


@pytest.mark.parametrize("content_type, media", [
    ("image/webp", True), ("video/webm", True), ("image/svg+xml", False), ("text/html", False), (None, False),
    # Types with no fixed extension, or with parameters, are read from the header, in any case:
    ("image/x-icon", True), ("Image/JPEG; charset=binary", True), ("VIDEO/x-matroska", True),
    ("audio/x-aiff", True), ("Audio/Opus; codecs=opus", True), ("image/svg+xml; charset=utf-8", False),
    ("application/octet-stream", False), ("text/html; charset=utf-8", False), ("", False),
])
def test_only_images_and_videos_are_media(content_type, media):
    assert layout.is_media(content_type) is media


@pytest.mark.parametrize("content_type, kind", [
    ("image/jpeg", "image/jpeg"), ("Image/JPEG; charset=binary; q=1", "image/jpeg"), (" video/mp4 ;x=1", "video/mp4"),
    (None, ""), ("", ""),
])
def test_the_media_type_is_the_header_before_its_first_parameter_lowercased(content_type, kind):
    assert layout.media_type(content_type) == kind
