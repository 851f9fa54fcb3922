"""store/disk.py against store/base.py's contract: a file appears at its final path only on commit."""

from __future__ import annotations

import hashlib
import os

import pytest

from crawler.store import disk
from crawler.store.base import Store
from crawler.store.disk import DiskStore

REL = "images/000/000/7.png"


async def _write(store: Store, body: bytes):
    sink = store.sink(REL, "image/png")
    for at in range(0, len(body), 3):
        await sink.write(body[at:at + 3])
    return sink


@pytest.mark.parametrize("tmpfile", [True, False], ids=["o_tmpfile", "named_part"])
async def test_nothing_at_the_final_path_before_commit_and_nothing_left_after_abort(tmp_path, tmpfile):
    store = DiskStore(tmp_path)
    store._tmpfile = tmpfile and store._tmpfile
    await store.clear_leftovers()
    sink = await _write(store, b"first body")
    assert not (tmp_path / REL).exists()
    await sink.abort()
    assert not (tmp_path / REL).exists() and os.listdir(tmp_path / disk.PARTIAL_DIR) == []
    sink = await _write(store, b"second body")
    await sink.commit()
    assert (tmp_path / REL).read_bytes() == b"second body"
    assert os.listdir(tmp_path / disk.PARTIAL_DIR) == []
    await store.close()


async def test_digest_and_read_give_what_was_committed(tmp_path):
    store = DiskStore(tmp_path)
    body = os.urandom(3 * 2**20 + 5)  # more than one read chunk
    sink = await _write(store, body[:30])
    await sink.write(body[30:])
    await sink.commit()
    assert await store.digest(REL) == (hashlib.sha256(body).hexdigest(), len(body))
    assert await store.read(REL) == body
    assert await store.digest("images/000/000/8.png") is None
    with pytest.raises(OSError):
        await store.digest("images")  # a folder: unreadable, not missing
    await store.close()


async def test_leftover_named_parts_of_a_killed_run_are_cleared(tmp_path):
    store = DiskStore(tmp_path)
    (tmp_path / disk.PARTIAL_DIR).mkdir()
    (tmp_path / disk.PARTIAL_DIR / "9.png.part").write_bytes(b"half")
    assert await store.clear_leftovers() == 1 and os.listdir(tmp_path / disk.PARTIAL_DIR) == []


async def test_read_digest_is_none_for_an_unreadable_file_unless_strict(tmp_path):
    assert await disk.read_digest(tmp_path) is None
    with pytest.raises(IsADirectoryError):
        await disk.read_digest(tmp_path, strict=True)
