"""state/durability.py's promise counted, not read back from the flag it writes: before a `durable` marker
is appended, every file added since the last one, each of their folders and the manifest itself were
fsynced; `fsync=False` syncs nothing; a commit with nothing new writes nothing.

`os.fsync` is replaced by a recorder (the path of each fd, read from /proc) that then really syncs.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from crawler.state import durability, records
from crawler.state.durability import GroupCommit
from crawler.state.manifest import MANIFEST_NAME, ManifestWriter, iter_records

pytestmark = pytest.mark.timeout(30)

_REAL_FSYNC = os.fsync


@pytest.fixture
def synced(monkeypatch):
    paths: list[str] = []

    def recording_fsync(fd: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        _REAL_FSYNC(fd)

    monkeypatch.setattr(durability.os, "fsync", recording_fsync)
    return paths


class Writer(ManifestWriter):
    """Notes, when a marker is appended, what had been fsynced by then."""

    __slots__ = ("seen", "at_marker")

    def __init__(self, path, seen):  # type: ignore[no-untyped-def]
        super().__init__(path)
        self.seen = seen
        self.at_marker: list[set[str]] = []

    def append(self, record):  # type: ignore[no-untyped-def]
        if record["kind"] == records.DURABLE:
            self.at_marker.append(set(self.seen))
        super().append(record)


def _files(root, names):  # type: ignore[no-untyped-def]
    paths = []
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
        paths.append(str(path))
    return paths


async def test_every_file_its_folder_and_the_manifest_are_fsynced_before_the_marker(tmp_path, synced):
    writer = Writer(tmp_path / MANIFEST_NAME, synced)
    commits = GroupCommit(writer)
    first = _files(tmp_path, ["images/a/1.jpg", "images/a/2.jpg", "images/b/3.jpg", "images/c/4.jpg", "images/c/5.jpg"])
    for path in first:
        writer.append({"kind": "image", "id": path})
        commits.add(path)
    await commits.commit()
    manifest = str(tmp_path / MANIFEST_NAME)
    folders = {str(tmp_path / "images" / d) for d in "abc"}
    assert writer.at_marker == [set(first) | folders | {manifest}]
    assert synced.count(manifest) == 1 and len(synced) == len(first) + len(folders) + 1
    assert (commits.commits, commits.files_synced) == (1, 5)

    synced.clear()
    second = _files(tmp_path, ["images/d/6.jpg"])
    writer.append({"kind": "image", "id": 6})
    commits.add(second[0])
    await commits.commit()
    assert writer.at_marker[1] == {second[0], str(tmp_path / "images" / "d"), manifest}
    markers = [r for r in iter_records(tmp_path / MANIFEST_NAME) if r["kind"] == records.DURABLE]
    assert [(m["files"], m["fsync"]) for m in markers] == [(5, True), (1, True)]
    assert writer.durable_offset == markers[1]["upto"] and (commits.commits, commits.files_synced) == (2, 6)


async def test_records_without_files_still_get_the_manifest_synced(tmp_path, synced):
    writer = Writer(tmp_path / MANIFEST_NAME, synced)
    commits = GroupCommit(writer)
    writer.append({"kind": "image", "id": 1, "status": "gone"})
    await commits.commit()
    assert writer.at_marker == [{str(tmp_path / MANIFEST_NAME)}]
    await commits.commit()  # only our own marker since: nothing to vouch for
    assert len(writer.at_marker) == 1 and commits.commits == 1


async def test_no_fsync_syncs_nothing_but_marks(tmp_path, synced):
    writer = Writer(tmp_path / MANIFEST_NAME, synced)
    commits = GroupCommit(writer, fsync=False)
    for path in _files(tmp_path, ["images/a/1.jpg"]):
        writer.append({"kind": "image", "id": 1})
        commits.add(path)
    await commits.commit()
    assert synced == [] and writer.at_marker == [set()] and commits.files_synced == 0
    marker = list(iter_records(tmp_path / MANIFEST_NAME))[-1]
    assert marker["fsync"] is False and marker["files"] == 1


async def test_many_pending_files_commit_before_the_interval(tmp_path, synced):
    writer = Writer(tmp_path / MANIFEST_NAME, synced)
    commits = GroupCommit(writer, interval=30.0, max_pending=3)
    task = asyncio.ensure_future(commits.run())
    try:
        for path in _files(tmp_path, ["images/a/1.jpg", "images/a/2.jpg", "images/a/3.jpg"]):
            writer.append({"kind": "image", "id": path})
            commits.add(path)
        for _ in range(200):
            if commits.commits:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert commits.commits == 1 and commits.files_synced == 3


async def test_a_file_gone_since_does_not_stop_the_others_being_synced(tmp_path, synced):
    writer = Writer(tmp_path / MANIFEST_NAME, synced)
    commits = GroupCommit(writer)
    paths = _files(tmp_path, ["images/a/1.jpg", "images/a/2.jpg", "images/a/3.jpg"])
    os.unlink(paths[0])  # replaced by a newer download since
    for path in paths:
        commits.add(path)
    writer.append({"kind": "image", "id": 1})
    await commits.commit()
    assert writer.at_marker == [{paths[1], paths[2], str(tmp_path / "images" / "a"), str(tmp_path / MANIFEST_NAME)}]


async def test_a_commit_cancelled_while_syncing_hands_its_files_to_the_next(tmp_path, monkeypatch):
    writer = ManifestWriter(tmp_path / MANIFEST_NAME)
    commits = GroupCommit(writer)
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_sync(files, writer):  # type: ignore[no-untyped-def]
        loop.call_soon_threadsafe(started.set)
        time.sleep(0.3)

    monkeypatch.setattr(durability, "_sync", slow_sync)
    commits.add("a")
    commits.add("b")
    writer.append({"kind": "image", "id": 1})
    task = asyncio.ensure_future(commits.commit())
    await started.wait()
    commits.add("c")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert commits._pending == ["a", "b", "c"] and commits.commits == 0
    assert not [r for r in iter_records(tmp_path / MANIFEST_NAME) if r["kind"] == records.DURABLE]
    await asyncio.sleep(0.35)  # the thread finishes on its own


async def test_by_default_a_commit_comes_about_once_a_second(tmp_path):
    writer = ManifestWriter(tmp_path / MANIFEST_NAME)
    commits = GroupCommit(writer)
    writer.append({"kind": "image", "id": 1, "status": "gone"})
    began = time.monotonic()
    task = asyncio.ensure_future(commits.run())
    try:
        for _ in range(150):
            if commits.commits:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
    assert commits.commits == 1 and 0.9 <= time.monotonic() - began < 1.6


async def test_by_default_2048_waiting_files_commit_at_once(tmp_path, synced):
    writer = ManifestWriter(tmp_path / MANIFEST_NAME)
    commits = GroupCommit(writer, interval=30.0)
    task = asyncio.ensure_future(commits.run())
    try:
        for n in range(2047):
            commits.add(str(tmp_path / f"gone-{n}"))  # files replaced since: skipped by the sync
        await asyncio.sleep(0.2)
        assert commits.commits == 0
        commits.add(str(tmp_path / "gone-last"))
        for _ in range(100):
            if commits.commits:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
    assert commits.commits == 1
