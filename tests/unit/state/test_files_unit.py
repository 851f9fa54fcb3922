"""state/files.py on real files: a replaced file is whole, no `.part` is left, the file's data is fsynced
before the rename and its folder after it (write_durable only), and a write that fails midway -- a
piece that is not bytes, an fsync's EIO, a rename onto a folder -- leaves the old content and no `.part`.
Also state/snapshot.py's side of it: a snapshot cut short (written but never synced) is ignored.

`files.os.fsync` is replaced by a recorder (the path of each fsynced fd, read from /proc) that then
really syncs. The tests run as root here, so a read-only folder would not make a write fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from crawler.state import files, resume, snapshot
from crawler.state.files import write_durable, write_whole

pytestmark = pytest.mark.timeout(30)

_REAL_FSYNC = os.fsync


@pytest.fixture
def fsynced(monkeypatch):  # type: ignore[no-untyped-def]
    """(what, path) of every fsync and rename, in order."""
    events: list[tuple[str, str]] = []
    real_replace = os.replace

    def recording_fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        _REAL_FSYNC(fd)

    def recording_replace(src, dst):  # type: ignore[no-untyped-def]
        events.append(("rename", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "fsync", recording_fsync)
    monkeypatch.setattr(files.os, "replace", recording_replace)
    return events


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_durable_syncs_the_data_then_renames_then_syncs_the_folder(tmp_path, fsynced):
    target = tmp_path / "plan.json"
    target.write_bytes(b"old")
    write_durable(target, b'{"new": true}\n')
    assert target.read_bytes() == b'{"new": true}\n' and _listing(tmp_path) == ["plan.json"]
    part = str(tmp_path / "plan.json.part")
    assert fsynced == [("fsync", part), ("rename", str(target)), ("fsync", str(tmp_path))]


def test_pieces_are_written_in_order_and_a_new_file_appears_whole(tmp_path, fsynced):
    target = tmp_path / "counts.json"
    write_durable(target, [b"one ", b"", b"two ", b"three"])
    assert target.read_bytes() == b"one two three" and _listing(tmp_path) == ["counts.json"]


def test_write_whole_renames_without_any_fsync(tmp_path, fsynced):
    target = tmp_path / ".resume-snapshot"
    write_whole(target, [b"a", b"b"])
    write_whole(target, b"c")
    assert target.read_bytes() == b"c" and _listing(tmp_path) == [".resume-snapshot"]
    assert fsynced == [("rename", str(target))] * 2


@pytest.mark.parametrize("write", [write_durable, write_whole])
def test_a_piece_that_fails_midway_leaves_the_old_content_and_no_part(tmp_path, fsynced, write):
    target = tmp_path / "exclusions.txt"
    target.write_bytes(b"1\n2\n")
    with pytest.raises(TypeError):
        write(target, [b"3\n", "not bytes", b"4\n"])  # type: ignore[list-item]
    assert target.read_bytes() == b"1\n2\n" and _listing(tmp_path) == ["exclusions.txt"]
    assert not [e for e in fsynced if e[0] == "rename"]


def test_an_fsync_error_leaves_the_old_content_and_no_part(tmp_path, monkeypatch):
    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    target = tmp_path / "plan.json"
    target.write_bytes(b"old")
    with pytest.raises(OSError) as caught:
        write_durable(target, b"new")
    assert caught.value.errno == 5
    assert target.read_bytes() == b"old" and _listing(tmp_path) == ["plan.json"]


def test_a_failed_rename_leaves_no_part_and_a_missing_folder_is_an_error(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "inside").write_bytes(b"x")
    with pytest.raises(OSError):
        write_durable(tmp_path / "taken", b"new")  # a non-empty folder where the file would go
    assert _listing(tmp_path) == ["taken"] and _listing(tmp_path / "taken") == ["inside"]
    with pytest.raises(FileNotFoundError):
        write_durable(tmp_path / "absent" / "f.json", b"new")  # creating folders is the caller's choice
    assert _listing(tmp_path) == ["taken"]


def test_a_snapshot_cut_short_is_ignored_and_the_whole_log_read(tmp_path):
    path = tmp_path / "manifest.jsonl"
    done = [{"kind": "image", "id": k, "status": "done", "path": f"images/{k}.jpeg", "sha256": "h"}
            for k in range(20)]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in done))
    state = resume.load(path, "q", snapshots=False)
    snapshot.save(path, state)
    assert snapshot.load(path, False) is not None
    saved = (tmp_path / snapshot.NAME).read_bytes()
    for cut in (1, len(saved) // 2):
        (tmp_path / snapshot.NAME).write_bytes(saved[:-cut])
        assert snapshot.load(path, False) is None, cut
