"""state/durability.py's promise counted, not read back from the flag it writes: before a `durable` marker
is appended, the filesystem of every file added since the last one and of the manifest was synced
(syncfs, once each), or -- where there is no syncfs -- every file, each of their folders and the
manifest were fsynced; `fsync=False` syncs nothing; a commit with nothing new writes nothing. On a
filesystem other than the manifest's, syncfs goes through one folder fd held from the first batch
there until `close()`.

`durability.syncfs` and `os.fsync` are replaced by recorders (`fs:<st_dev>` of each syncfs, the path
of each fsynced fd read from /proc) that then really sync.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from crawler.state import durability, records
from crawler.state.durability import GroupCommit
from crawler.state.manifest import MANIFEST_NAME, ManifestWriter, iter_records

pytestmark = pytest.mark.timeout(30)

_REAL_FSYNC = os.fsync
_REAL_SYNCFS = durability.syncfs


@pytest.fixture
def synced(monkeypatch):
    """Every sync the commit makes, in order; per-file fsync (no syncfs) unless the test asks for syncfs."""
    paths: list[str] = []

    def recording_fsync(fd: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        _REAL_FSYNC(fd)

    def recording_syncfs(fd: int) -> None:
        paths.append(f"fs:{os.fstat(fd).st_dev}")
        _REAL_SYNCFS(fd)

    monkeypatch.setattr(durability.os, "fsync", recording_fsync)
    monkeypatch.setattr(durability, "syncfs", recording_syncfs)
    monkeypatch.setattr(durability, "_syncfs", None)
    return paths


@pytest.fixture
def synced_fs(synced, monkeypatch):
    """As `synced`, with syncfs as Linux has it (the default path)."""
    assert durability._libc_syncfs() is not None, "no syncfs in this libc: the default path is untested"
    monkeypatch.setattr(durability, "_syncfs", durability._libc_syncfs())
    return synced


def _fs(path) -> str:  # type: ignore[no-untyped-def]
    return f"fs:{os.stat(path).st_dev}"


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

    def slow_sync(files, writer, others):  # type: ignore[no-untyped-def]
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


async def test_by_default_commits_come_about_ten_times_a_second_counted_from_the_last_start(tmp_path):
    writer = ManifestWriter(tmp_path / MANIFEST_NAME)
    commits = GroupCommit(writer, fsync=False)  # the pacing alone: no disk in the timing
    task = asyncio.ensure_future(commits.run())
    seen_at = []
    try:
        for n in range(6):
            writer.append({"kind": "image", "id": n, "status": "gone"})
            before = commits.commits
            for _ in range(200):
                if commits.commits > before:
                    break
                await asyncio.sleep(0.002)
            seen_at.append(time.monotonic())
    finally:
        task.cancel()
    gaps = [b - a for a, b in itertools.pairwise(seen_at)]
    # Each record waits for the next tick: ~0.1 s apart, never the old second, never back to back.
    assert commits.commits == 6 and all(0.08 <= g < 0.3 for g in gaps), gaps


async def test_a_sync_longer_than_the_interval_is_followed_by_the_next_at_once(tmp_path, monkeypatch):
    """Back to back while the disk is busy: the wait is counted from the previous commit's start."""
    started: list[float] = []

    def slow_sync(*_args: object) -> None:
        started.append(time.monotonic())
        time.sleep(0.6)

    monkeypatch.setattr(durability, "_sync", slow_sync)
    writer = ManifestWriter(tmp_path / MANIFEST_NAME)
    commits = GroupCommit(writer, interval=0.5)
    task = asyncio.ensure_future(commits.run())
    try:
        writer.append({"kind": "image", "id": 1, "status": "gone"})
        for _ in range(500):
            if started:
                break
            await asyncio.sleep(0.002)
        writer.append({"kind": "image", "id": 2, "status": "gone"})  # waits while the first sync runs
        for _ in range(1000):
            if commits.commits == 2:
                break
            await asyncio.sleep(0.002)
    finally:
        task.cancel()
    # Two syncs of 0.6 s one after the other (~1.2 s); waiting the interval after the first would take 1.7 s.
    assert commits.commits == 2 and len(started) == 2 and time.monotonic() - started[0] < 1.45, started


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


async def test_one_syncfs_of_the_manifests_filesystem_covers_a_batch_before_its_marker(tmp_path, synced_fs):
    writer = Writer(tmp_path / MANIFEST_NAME, synced_fs)
    commits = GroupCommit(writer)
    for path in _files(tmp_path, ["images/a/1.jpg", "images/a/2.jpg", "images/b/3.jpg"]):
        writer.append({"kind": "image", "id": path})
        commits.add(path)
    await commits.commit()
    assert writer.at_marker == [{_fs(tmp_path)}] and synced_fs == [_fs(tmp_path)]  # no fsync of any file
    assert (commits.commits, commits.files_synced) == (1, 3)
    writer.append({"kind": "image", "id": 4, "status": "gone"})
    await commits.commit()
    assert synced_fs == [_fs(tmp_path)] * 2 and len(writer.at_marker) == 2


async def test_images_on_another_filesystem_than_the_manifest_sync_both(tmp_path, synced_fs):
    assert _fs("/dev/shm") != _fs(tmp_path), \
        "no second filesystem (/dev/shm) to put images on: the test needs one"
    shm = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        writer = Writer(tmp_path / MANIFEST_NAME, synced_fs)
        commits = GroupCommit(writer)
        for path in _files(shm, ["images/a/1.jpg", "images/b/2.jpg"]):
            writer.append({"kind": "image", "id": path})
            commits.add(path)
        await commits.commit()
        assert writer.at_marker == [{_fs(shm), _fs(tmp_path)}]
        assert synced_fs == [_fs(shm), _fs(tmp_path)]  # the manifest's last: its records after their files
    finally:
        shutil.rmtree(shm, ignore_errors=True)


async def test_one_folder_fd_per_other_filesystem_is_held_across_commits_until_close(tmp_path, synced_fs, monkeypatch):
    """syncfs reports only errors since its fd was opened: the fd on the images' filesystem is opened
    once, at the first batch there, and stays open (the same one) until close(); each folder's
    filesystem is asked once, not once a batch."""
    assert _fs("/dev/shm") != _fs(tmp_path), \
        "no second filesystem (/dev/shm) to put images on: the test needs one"
    shm = Path(tempfile.mkdtemp(dir="/dev/shm"))
    stats: list[str] = []
    real_stat = os.stat

    def recording_stat(path, *args, **kw):  # type: ignore[no-untyped-def]
        if isinstance(path, str) and path.startswith(str(shm)):
            stats.append(path)
        return real_stat(path, *args, **kw)

    def held() -> list[tuple[str, str]]:  # (fd, target) of every fd of ours open on a folder in `shm`
        links = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except FileNotFoundError:  # the listing's own fd, closed since
                continue
            if target.startswith(str(shm)):
                links.append((fd, target))
        return links

    monkeypatch.setattr(durability.os, "stat", recording_stat)
    try:
        writer = Writer(tmp_path / MANIFEST_NAME, synced_fs)
        commits = GroupCommit(writer)
        between = []
        for names in (["images/a/1.jpg"], ["images/b/2.jpg", "images/a/3.jpg"], ["images/a/4.jpg"]):
            for path in _files(shm, names):
                writer.append({"kind": "image", "id": path})
                commits.add(path)
            await commits.commit()
            between.append(held())
        assert synced_fs == [_fs(shm), _fs(tmp_path)] * 3 and commits.commits == 3
        assert between[0] == between[1] == between[2] and [t for _, t in between[0]] == [str(shm / "images" / "a")]
        assert sorted(stats) == [str(shm / "images" / d) for d in "ab"]  # each folder asked once
        commits.close()
        assert held() == []
        commits.close()  # twice is harmless
    finally:
        shutil.rmtree(shm, ignore_errors=True)


async def test_a_failed_syncfs_writes_no_marker_and_counts_nothing_synced(tmp_path, synced_fs, monkeypatch):
    """An I/O error on the commit (EIO from write-back) must surface, never be vouched for by a marker."""
    def failing_syncfs(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(durability, "syncfs", failing_syncfs)
    writer = Writer(tmp_path / MANIFEST_NAME, synced_fs)
    commits = GroupCommit(writer)
    for path in _files(tmp_path, ["images/a/1.jpg", "images/a/2.jpg"]):
        writer.append({"kind": "image", "id": path})
        commits.add(path)
    with pytest.raises(OSError):
        await commits.commit()
    writer.flush()
    assert writer.at_marker == [] and commits.files_synced == 0 and commits.commits == 0
    assert not [r for r in iter_records(tmp_path / MANIFEST_NAME) if r["kind"] == records.DURABLE]
