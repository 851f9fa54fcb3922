"""state/manifest.py on its own, with real files: every append reaches the kernel at once (kill -9 loses
nothing appended), a torn last line never swallows the next record, readers skip and report bad lines,
offsets are exact, and a full disk is `DiskFull` with what was written kept and counted.
"""

from __future__ import annotations

import errno
import os

import orjson
import pytest

from crawler.state import manifest
from crawler.state.manifest import MANIFEST_NAME, ManifestWriter, iter_records, iter_records_at
from crawler.store.errors import DiskFull

pytestmark = pytest.mark.timeout(30)


def _line(record: dict) -> bytes:
    return orjson.dumps(record) + b"\n"


def test_each_append_is_in_the_file_before_append_returns(tmp_path):
    path = tmp_path / MANIFEST_NAME
    writer = ManifestWriter(path)
    for i in range(5):
        writer.append({"kind": "image", "id": i})
        assert path.read_bytes() == b"".join(_line({"kind": "image", "id": n}) for n in range(i + 1))
    assert writer.appended == 5 and writer.offset == path.stat().st_size and writer.broken is False
    writer.close()
    writer.close()  # twice is harmless


def test_on_append_sees_each_record_at_its_offset(tmp_path):
    path = tmp_path / MANIFEST_NAME
    path.write_bytes(_line({"kind": "run"}))
    seen: list[tuple[int, dict]] = []
    writer = ManifestWriter(path, on_append=lambda offset, record: seen.append((offset, record)))
    writer.append({"kind": "image", "id": 1})
    writer.append({"kind": "image", "id": 2})
    writer.close(sync=False)
    assert seen == list(iter_records_at(path))[1:]
    assert seen[0][0] == len(_line({"kind": "run"}))


def test_a_torn_last_line_is_closed_before_the_first_new_record(tmp_path):
    path = tmp_path / MANIFEST_NAME
    torn = _line({"kind": "image", "id": 1}) + b'{"kind":"image","id":2,"sta'
    path.write_bytes(torn)
    seen: list[int] = []
    writer = ManifestWriter(path, on_append=lambda offset, record: seen.append(offset))
    assert writer.offset == len(torn)
    writer.append({"kind": "image", "id": 3})
    writer.close()
    assert path.read_bytes() == torn + b"\n" + _line({"kind": "image", "id": 3})
    assert seen == [len(torn) + 1]  # where the record starts, after the closing newline
    bad: list[tuple[int, bytes]] = []
    assert [r["id"] for r in iter_records(path, lambda n, raw: bad.append((n, raw)))] == [1, 3]
    assert bad == [(2, b'{"kind":"image","id":2,"sta\n')]


def test_a_file_ending_in_a_newline_gets_no_blank_line(tmp_path):
    path = tmp_path / MANIFEST_NAME
    path.write_bytes(_line({"kind": "run"}))
    writer = ManifestWriter(path)
    writer.append({"kind": "run"})
    writer.close()
    assert path.read_bytes() == _line({"kind": "run"}) * 2


def test_flush_bytes_batches_until_the_size_or_the_time_is_reached(tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(manifest.time, "monotonic", lambda: clock[0])
    path = tmp_path / MANIFEST_NAME
    writer = ManifestWriter(path, flush_bytes=100, flush_seconds=5.0)
    writer.append({"kind": "run", "pad": "x" * 10})
    assert path.read_bytes() == b"" and writer.offset == 0
    writer.append({"kind": "run", "pad": "x" * 80})  # past 100 bytes: flushed
    assert len(path.read_bytes()) == writer.offset > 100
    writer.append({"kind": "run"})
    clock[0] += 4.75  # (binary-exact steps: the clock arithmetic below is exact)
    writer.append({"kind": "run"})
    assert path.read_bytes().count(b"\n") == 2
    clock[0] += 0.5  # 5.25 s since the last flush
    writer.append({"kind": "run"})
    assert path.read_bytes().count(b"\n") == 5
    writer.flush()  # nothing buffered: nothing happens
    clock[0] += 1.0
    writer.append({"kind": "run"})
    clock[0] += 4.0  # exactly flush_seconds since the last flush: due
    writer.append({"kind": "run"})
    assert path.read_bytes().count(b"\n") == 7
    writer.close()
    assert path.read_bytes().count(b"\n") == 7


def test_a_batch_of_exactly_flush_bytes_is_written(tmp_path):
    path = tmp_path / MANIFEST_NAME
    writer = ManifestWriter(path, flush_bytes=len(_line({"kind": "run"})), flush_seconds=60)
    writer.append({"kind": "run"})
    assert path.read_bytes() == _line({"kind": "run"})


def test_a_new_manifest_is_readable_by_all_writable_by_its_owner(tmp_path):
    old = os.umask(0)
    try:
        ManifestWriter(tmp_path / MANIFEST_NAME).close()
    finally:
        os.umask(old)
    assert (tmp_path / MANIFEST_NAME).stat().st_mode & 0o777 == 0o644


def test_short_writes_are_continued_until_the_record_is_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest.os, "write", lambda fd, data: _REAL_WRITE(fd, bytes(data[:3])))
    writer = ManifestWriter(tmp_path / MANIFEST_NAME)
    writer.append({"kind": "image", "id": 12345})
    line = _line({"kind": "image", "id": 12345})
    assert (tmp_path / MANIFEST_NAME).read_bytes() == line and writer.offset == len(line)


def test_readers_skip_blank_garbage_and_kindless_lines_and_number_them(tmp_path):
    path = tmp_path / MANIFEST_NAME
    lines = [_line({"kind": "run"}), b"\n", b"not json\n", b"[1, 2]\n", _line({"id": 4}), _line({"kind": 5}),
             _line({"kind": "image", "id": 7}), b"   \n"]
    path.write_bytes(b"".join(lines))
    bad: list[int] = []
    got = list(iter_records_at(path, lambda n, raw: bad.append(n)))
    assert bad == [3, 4, 5, 6]
    assert got == [(0, {"kind": "run"}), (sum(map(len, lines[:6])), {"kind": "image", "id": 7})]
    assert list(iter_records_at(path)) == got  # without a callback, still skipped


def test_reading_from_an_offset_to_an_end_with_progress(tmp_path):
    path = tmp_path / MANIFEST_NAME
    lines = [_line({"kind": "image", "id": i}) for i in range(6)]
    path.write_bytes(b"".join(lines))
    at = [sum(map(len, lines[:i])) for i in range(7)]
    progress = [0, 0]
    got = list(iter_records_at(path, start=at[2], end=at[5], progress=progress))
    assert [(o, r["id"]) for o, r in got] == [(at[2], 2), (at[3], 3), (at[4], 4)]
    assert progress == [at[5], 3]  # the line at `end` is read but not taken
    progress = [0, 0]
    assert [r["id"] for _o, r in iter_records_at(path, start=at[4], progress=progress)] == [4, 5]
    assert progress == [at[6], 2]
    assert list(iter_records_at(path, end=0)) == []


def test_a_missing_manifest_has_no_records(tmp_path):
    assert list(iter_records(tmp_path / "absent.jsonl")) == []


_REAL_WRITE = os.write  # os.write itself is what the tests replace


class _FullAfter:
    """os.write that accepts `room` bytes in total, then fails with `code`."""

    def __init__(self, room: int, code: int = errno.ENOSPC) -> None:
        self.room, self.code = room, code

    def __call__(self, fd: int, data) -> int:  # type: ignore[no-untyped-def]
        if self.room <= 0:
            del data  # as the real call, keep no view of the caller's buffer (it is resized next)
            raise OSError(self.code, os.strerror(self.code))
        n = min(self.room, len(data))
        self.room -= n
        return _REAL_WRITE(fd, bytes(data[:n]))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_is_disk_full_and_the_partial_write_is_counted(tmp_path, monkeypatch, code):
    path = tmp_path / MANIFEST_NAME
    writer = ManifestWriter(path)
    first = _line({"kind": "image", "id": 1})
    monkeypatch.setattr(manifest.os, "write", _FullAfter(len(first) + 5, code))
    writer.append({"kind": "image", "id": 1})
    with pytest.raises(DiskFull) as raised:
        writer.append({"kind": "image", "id": 2})
    assert raised.value.errno == code and str(path) in raised.value.strerror
    assert writer.broken and writer.offset == len(first) + 5 == path.stat().st_size
    assert [r["id"] for r in iter_records(path)] == [1]  # the torn second line is skipped by readers


@pytest.mark.parametrize("room", [0, 5])  # the write refused outright, or torn after 5 bytes
def test_after_a_full_disk_the_rest_of_the_torn_record_is_written_first(tmp_path, monkeypatch, room):
    """What a failed write did not hand to the kernel is kept and goes out before the next record."""
    path = tmp_path / MANIFEST_NAME
    writer = ManifestWriter(path)
    monkeypatch.setattr(manifest.os, "write", _FullAfter(room))
    with pytest.raises(DiskFull):
        writer.append({"kind": "image", "id": 1})
    monkeypatch.setattr(manifest.os, "write", _REAL_WRITE)  # space freed
    writer.append({"kind": "image", "id": 2})
    writer.close(sync=False)
    assert path.read_bytes() == _line({"kind": "image", "id": 1}) + _line({"kind": "image", "id": 2})
    assert writer.offset == path.stat().st_size


def test_another_write_error_is_raised_as_it_is(tmp_path, monkeypatch):
    writer = ManifestWriter(tmp_path / MANIFEST_NAME)
    monkeypatch.setattr(manifest.os, "write", _FullAfter(0, errno.EIO))
    with pytest.raises(OSError) as raised:
        writer.append({"kind": "run"})
    assert raised.value.errno == errno.EIO and not isinstance(raised.value, DiskFull) and writer.broken


def test_close_fsyncs_unless_told_not_to_and_sync_fsyncs(tmp_path, monkeypatch):
    synced: list[int] = []
    monkeypatch.setattr(manifest.os, "fsync", synced.append)
    writer = ManifestWriter(tmp_path / MANIFEST_NAME, flush_bytes=1 << 20)
    writer.append({"kind": "run"})
    writer.sync()
    assert len(synced) == 1
    writer.close()
    assert len(synced) == 2 and (tmp_path / MANIFEST_NAME).read_bytes() == _line({"kind": "run"})
    writer.close()  # closed already: no fsync of whatever the old descriptor number is now
    other = ManifestWriter(tmp_path / "other.jsonl")
    other.close(sync=False)
    assert len(synced) == 2


@pytest.mark.parametrize("flush_bytes", [0, 1 << 20])  # each record written at once, or batched
@pytest.mark.parametrize("before", [b"", _line({"kind": "run"}) * 2, _line({"kind": "run"}) + b'{"kind":"ima'])
def test_end_is_the_size_and_line_count_a_reader_of_the_whole_file_finds(tmp_path, before, flush_bytes):
    """What lets a crawl's exit snapshot skip reading back what it wrote: the writer's count from a counted
    start (a torn last line included) is the count of a fresh read of the file."""
    from crawler.state import resume

    path = tmp_path / MANIFEST_NAME
    path.write_bytes(before)
    start = resume.load(path, "q", snapshots=False)
    writer = ManifestWriter(path, counted=(start.covered, start.lines), flush_bytes=flush_bytes)
    for i in range(5):
        writer.append({"kind": "image", "id": i, "status": "done"})
        if i == 2:
            writer.flush()  # two batches: each counts its own lines
    writer.close(sync=False)
    fresh = resume.load(path, "q", snapshots=False)
    assert writer.end() == (fresh.covered, fresh.lines) == (path.stat().st_size, start.lines + 5)
    assert fresh.bad_lines == ([2] if before.endswith(b"ima") else [])


def test_end_is_unknown_without_a_count_of_this_very_file_or_after_a_failed_write(tmp_path, monkeypatch):
    path = tmp_path / MANIFEST_NAME
    path.write_bytes(_line({"kind": "run"}))
    assert ManifestWriter(path).end() is None  # nobody counted it
    assert ManifestWriter(path, counted=(1, 1)).end() is None  # counted when it had another size
    writer = ManifestWriter(path, counted=(path.stat().st_size, 1))
    assert writer.end() == (path.stat().st_size, 1)
    monkeypatch.setattr(manifest.os, "write", _FullAfter(4))
    with pytest.raises(DiskFull):
        writer.append({"kind": "image", "id": 1})
    assert writer.end() is None
