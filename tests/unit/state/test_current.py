"""state/records.py readers and state/current.py: the last record of an image is its state, read one way."""

from __future__ import annotations

from crawler.state import records
from crawler.state.current import current_done
from crawler.state.manifest import MANIFEST_NAME, ManifestWriter

UUID = "ab12cd34-0000-4000-8000-000000000000"


class Job:
    def __init__(self, ident, uuid=None, source=None) -> None:
        self.id, self.uuid, self.url, self.source = ident, uuid, "https://cdn.test/x.png", source


def _done(job, path="images/000/000/1.png"):
    return records.done(job, {"id": job.id}, 10, path, "0" * 64, 3, "image/png")


def test_key_of_prefers_the_id_and_never_takes_a_bool_or_empty_uuid():
    assert records.key_of({"id": 5, "uuid": UUID}) == 5
    assert records.key_of({"id": None, "uuid": UUID}) == UUID
    assert records.key_of({"id": True, "uuid": ""}) is None and records.key_of({}) is None


def test_readers_answer_none_for_records_of_another_kind():
    assert records.status_of(_done(Job(1))) == records.DONE
    assert records.status_of(records.ref(Job(1))) is None
    assert records.durable_upto(records.durable(10, 1, True)) == 10
    assert records.durable_upto({"kind": "durable", "upto": True}) is None
    assert records.durable_upto(records.hwm("q", "2024-01-01")) is None
    assert records.is_run_end(records.run_end("q", "feed-ended", "", 0, {}, {}))
    assert not records.is_run_end(records.run_start("q", {}, {}, None))


def test_current_done_yields_each_image_once_as_its_last_record_left_it(tmp_path):
    path = tmp_path / MANIFEST_NAME
    writer = ManifestWriter(path)
    writer.append(_done(Job(1), "a"))
    writer.append(records.failed(Job(2), {}, "http", "500", 3))
    writer.append(_done(Job(2), "b"))
    writer.append(_done(Job(3), "c"))
    writer.append(records.gone(Job(3), "404"))  # done, then gone: not held any more
    writer.append(_done(Job(1), "a2"))  # downloaded again: the later record wins
    writer.append(_done(Job(None, UUID), "u"))
    writer.append(records.ref(Job(2, source="model:7/version:8")))
    writer.append({"kind": "image", "status": "done", "path": "nameless"})  # names no image: skipped
    writer.close()
    sources: dict = {}
    got = [(records.key_of(r), r["path"]) for r in current_done(path, sources)]
    assert got == [(2, "b"), (1, "a2"), (UUID, "u")]
    assert sources == {2: {"model:7/version:8"}}


def test_records_appended_after_reading_began_are_not_read(tmp_path):
    path = tmp_path / MANIFEST_NAME
    writer = ManifestWriter(path)
    writer.append(_done(Job(1)))
    reading = current_done(path)
    first = next(reading)  # the end was fixed when reading began
    writer.append(_done(Job(2)))
    writer.close()
    assert first["id"] == 1 and list(reading) == []


def test_a_missing_manifest_has_nothing_done(tmp_path):
    assert list(current_done(tmp_path / MANIFEST_NAME)) == []
