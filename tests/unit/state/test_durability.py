"""state/durability.py and the power-loss re-check: markers vouch only for what was synced; records past
the last marker are re-checked against their files at the next start."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from crawler.state import durability, records
from crawler.state.durability import GroupCommit, OtherFilesystems
from crawler.state.manifest import MANIFEST_NAME, ManifestWriter, iter_records, iter_records_at
from crawler.state.mirror import Mirror

pytestmark = pytest.mark.timeout(30)

_REAL_SYNCFS = durability.syncfs


class Job:
    def __init__(self, ident: int) -> None:
        self.id, self.uuid, self.url, self.source = ident, None, f"https://cdn.test/{ident}.png", None


def _done(root, writer, ident: int, body: bytes) -> str:
    rel = f"images/000/000/{ident}.png"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(body)
    writer.append(records.done(Job(ident), {"id": ident}, 10, rel, hashlib.sha256(body).hexdigest(), len(body),
                               "image/png"))
    return str(root / rel)


def _markers(path):
    return [(offset, r) for offset, r in iter_records_at(path) if r["kind"] == records.DURABLE]


async def test_a_marker_vouches_for_every_record_before_it_and_names_the_files_synced(tmp_path):
    writer = ManifestWriter(tmp_path / MANIFEST_NAME)
    commits = GroupCommit(writer)
    commits.add(_done(tmp_path, writer, 1, b"one"))
    commits.add(_done(tmp_path, writer, 2, b"two"))
    before = writer.offset
    await commits.commit()
    _done(tmp_path, writer, 3, b"three")  # after the commit: not covered
    writer.close()
    [(at, marker)] = _markers(tmp_path / MANIFEST_NAME)
    assert marker["upto"] == before == at and marker["files"] == 2 and marker["fsync"] is True
    assert commits.commits == 1 and commits.files_synced == 2 and writer.durable_offset == before


async def test_nothing_new_writes_no_marker_and_no_fsync_still_marks(tmp_path):
    writer = ManifestWriter(tmp_path / MANIFEST_NAME)
    commits = GroupCommit(writer, fsync=False)
    await commits.commit()
    assert _markers(tmp_path / MANIFEST_NAME) == []
    commits.add(_done(tmp_path, writer, 1, b"one"))
    await commits.commit()
    await commits.commit()  # only the marker itself was appended since: nothing new to vouch for
    writer.close()
    markers = _markers(tmp_path / MANIFEST_NAME)
    assert len(markers) == 1 and markers[0][1]["fsync"] is False and commits.files_synced == 0


async def test_run_commits_about_every_interval_until_cancelled(tmp_path):
    writer = ManifestWriter(tmp_path / MANIFEST_NAME)
    commits = GroupCommit(writer, interval=0.05)
    task = asyncio.create_task(commits.run())
    for ident in range(3):
        commits.add(_done(tmp_path, writer, ident, b"x%d" % ident))
        await asyncio.sleep(0.15)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    writer.close()
    assert 3 <= commits.commits and commits.files_synced == 3


async def test_a_file_replaced_since_its_record_is_skipped_not_fatal(tmp_path):
    writer = ManifestWriter(tmp_path / MANIFEST_NAME)
    commits = GroupCommit(writer)
    path = _done(tmp_path, writer, 1, b"one")
    commits.add(path)
    (tmp_path / "images/000/000/1.png").unlink()
    await commits.commit()
    writer.close()
    assert len(_markers(tmp_path / MANIFEST_NAME)) == 1


async def test_after_a_power_loss_only_records_past_the_marker_are_rechecked(tmp_path):
    writer = ManifestWriter(tmp_path / MANIFEST_NAME)
    commits = GroupCommit(writer)
    commits.add(_done(tmp_path, writer, 1, b"synced"))
    await commits.commit()
    _done(tmp_path, writer, 2, b"intact")
    _done(tmp_path, writer, 3, b"will be torn")
    _done(tmp_path, writer, 4, b"will vanish")
    writer.close()
    (tmp_path / "images/000/000/3.png").write_bytes(b"will be")  # the page cache never reached the disk
    (tmp_path / "images/000/000/4.png").unlink()
    (tmp_path / "images/000/000/1.png").write_bytes(b"")  # before the marker: trusted, not re-read
    lines: list[str] = []
    async with Mirror(tmp_path, "q", lines.append, images=tmp_path) as mirror:
        assert mirror.state.done == {1, 2}
        assert mirror.state.unverified == []
    assert any("2 recent image(s)" in line for line in lines)
    assert [r["id"] for r in iter_records(tmp_path / MANIFEST_NAME) if r["kind"] == "image"] == [1, 2, 3, 4]


@pytest.fixture
def syncs(monkeypatch):
    """`fs:<st_dev>` of every syncfs a commit makes, in order (each then really made), through the libc
    binding asked afresh -- the default path, where syncfs exists."""
    seen: list[str] = []

    def recording_syncfs(fd: int) -> None:
        seen.append(f"fs:{os.fstat(fd).st_dev}")
        _REAL_SYNCFS(fd)

    binding = durability._libc_syncfs()
    assert binding is not None, "no syncfs in this libc: the default path is untested"
    monkeypatch.setattr(durability, "_syncfs", binding)
    monkeypatch.setattr(durability, "syncfs", recording_syncfs)
    return seen


@pytest.fixture
def shm():
    """A folder on a second filesystem (tmpfs), apart from tmp_path's where the manifest is."""
    folder = Path(tempfile.mkdtemp(dir="/dev/shm"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _fs(path) -> str:  # type: ignore[no-untyped-def]
    return f"fs:{os.stat(path).st_dev}"


def _image(writer, path: Path) -> str:  # type: ignore[no-untyped-def]
    """A finished image at `path` and its record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"image")
    writer.append({"kind": "image", "id": str(path)})
    return str(path)


def _open_on(folder) -> list[str]:  # type: ignore[no-untyped-def]
    """What every fd of ours open on `folder` (or under it, unless it is /proc) points at, sorted."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the listing's own fd, closed since
            continue
        if target == str(folder) or (str(folder) != "/proc" and target.startswith(f"{folder}/")):
            targets.append(target)
    return sorted(targets)


def test_syncfs_returns_nothing_on_success_and_raises_the_errno_of_a_failure(tmp_path, monkeypatch):
    """A failed syncfs (EIO of write-back in a crawl; here EBADF, a closed fd) must surface as the OSError
    the kernel reported -- its errno and message -- never as success nor as errno 0."""
    monkeypatch.setattr(durability, "_syncfs", durability._libc_syncfs())  # the binding as the module makes it
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert durability.syncfs(fd) is None
    finally:
        os.close(fd)
    # ctypes' own copy of errno is what get_errno() reads; a binding made without use_errno never
    # updates it, so clear it first: a stale EBADF left by an earlier call must not pass for this one.
    ctypes.set_errno(0)
    with pytest.raises(OSError) as failed:
        durability.syncfs(fd)  # closed just above
    assert failed.value.errno == errno.EBADF and failed.value.strerror == os.strerror(errno.EBADF)


async def test_two_other_filesystems_each_get_their_own_syncfs_through_their_own_fd(tmp_path, shm, syncs):
    """Images on two filesystems apart from the manifest's: each is synced through the fd held on it (one
    per st_dev), in the first batch and again in the next, then the manifest's filesystem, last."""
    # procfs is on every Linux: a third filesystem, synced but never written (its image is gone since).
    assert len({_fs(tmp_path), _fs(shm), _fs("/proc")}) == 3, "tmp_path, /dev/shm and /proc must differ"
    writer = ManifestWriter(tmp_path / MANIFEST_NAME)
    commits = GroupCommit(writer)
    try:
        for n in range(2):
            syncs.clear()
            commits.add(_image(writer, shm / "images" / "a" / f"{n}.jpg"))
            commits.add(f"/proc/{n}.jpg")
            await commits.commit()
            assert syncs == [_fs(shm), _fs("/proc"), _fs(tmp_path)]
            assert _open_on(shm) == [str(shm / "images" / "a")] and _open_on("/proc") == ["/proc"]  # one held on each
        assert commits.commits == 2
    finally:
        commits.close()
        writer.close()
    assert _open_on(shm) == [] and _open_on("/proc") == []


async def test_a_commit_after_close_still_syncs_the_other_filesystem_and_holds_no_fd(tmp_path, shm, syncs):
    """close() ends the crawl, but the final commit (or a sync thread a cancelled commit left running) can
    come after it: its batch is still synced on the images' filesystem, through an fd opened for it and
    closed again -- nothing stays open once the crawl is over."""
    writer = ManifestWriter(tmp_path / MANIFEST_NAME)
    commits = GroupCommit(writer)
    commits.close()
    try:
        for n in range(2):
            syncs.clear()
            commits.add(_image(writer, shm / "images" / f"{n}.jpg"))
            await commits.commit()
            assert syncs == [_fs(shm), _fs(tmp_path)] and _open_on(shm) == []
        assert commits.commits == 2 and commits.files_synced == 2
    finally:
        writer.close()


def test_the_folders_remembered_are_bounded(tmp_path, monkeypatch):
    """A long crawl writes into ever new folders: which filesystem each is on is remembered for at most
    _FOLDERS_REMEMBERED of them (then forgotten at once), so that memory does not grow with the crawl."""
    monkeypatch.setattr(durability, "_FOLDERS_REMEMBERED", 4)  # 8192 in a crawl; read at each call
    others = OtherFilesystems()
    dev = os.stat(tmp_path).st_dev
    for n in range(10):
        folder = tmp_path / str(n)
        folder.mkdir()
        assert others.device_of(str(folder)) == dev
        assert len(others._device_of) <= 4
    assert others.device_of(str(tmp_path / "gone")) is None


async def test_files_in_a_folder_already_seen_do_not_end_the_batch_early(tmp_path, shm, syncs):
    """Several files of a batch share a folder, asked once: the files after them are still looked at, so
    the images on another filesystem that come later in the batch get their syncfs before the marker."""
    writer = ManifestWriter(tmp_path / MANIFEST_NAME)
    commits = GroupCommit(writer)
    try:
        for path in (tmp_path / "images/a/1.jpg", tmp_path / "images/a/2.jpg", shm / "images/b/3.jpg"):
            commits.add(_image(writer, path))
        await commits.commit()
        assert syncs == [_fs(shm), _fs(tmp_path)] and commits.files_synced == 3
    finally:
        commits.close()
        writer.close()
