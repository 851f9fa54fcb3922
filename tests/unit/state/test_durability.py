"""state/durability.py and the power-loss re-check: markers vouch only for what was synced; records past
the last marker are re-checked against their files at the next start."""

from __future__ import annotations

import asyncio
import hashlib

from crawler.state import records
from crawler.state.durability import GroupCommit
from crawler.state.manifest import MANIFEST_NAME, ManifestWriter, iter_records, iter_records_at
from crawler.state.mirror import Mirror


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
