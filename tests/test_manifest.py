"""The manifest log: append, torn and garbage lines, resume state."""

import orjson

from crawler.manifest import ManifestWriter, ResumeState, iter_records


def test_torn_last_line_is_skipped_and_next_record_starts_clean(tmp_path):
    path = tmp_path / "manifest.jsonl"
    w = ManifestWriter(path)
    w.append({"kind": "image", "id": 1, "status": "done"})
    w.close()
    with open(path, "ab") as f:
        f.write(b'{"kind": "image", "id": 2, "sta')  # kill -9 mid-write
    w = ManifestWriter(path)
    w.append({"kind": "image", "id": 3, "status": "done"})
    w.close()
    bad = []
    ids = [r["id"] for r in iter_records(path, lambda n, raw: bad.append(n))]
    assert ids == [1, 3] and bad == [2]


def test_garbage_in_the_middle_is_reported_once_and_rest_is_read(tmp_path):
    path = tmp_path / "manifest.jsonl"
    lines = [orjson.dumps({"kind": "image", "id": i, "status": "done"}) for i in range(5)]
    lines.insert(2, b"\x00\xffnot json at all")
    lines.insert(4, b'"a string, valid json but not a record"')
    original = b"\n".join(lines) + b"\n"
    path.write_bytes(original)
    state = ResumeState.load(path, "q")
    assert state.done == {0, 1, 2, 3, 4} and state.bad_lines == [3, 5]
    assert path.read_bytes() == original  # never rewritten


def test_resume_state_last_record_wins_and_checkpoint_is_per_query(tmp_path):
    path = tmp_path / "manifest.jsonl"
    w = ManifestWriter(path)
    for rec in [
        {"kind": "image", "id": 1, "status": "failed", "item": {"id": 1}},
        {"kind": "image", "id": 2, "status": "failed", "item": {"id": 2}},
        {"kind": "image", "id": 1, "status": "done"},
        {"kind": "image", "id": 3, "status": "gone"},
        {"kind": "checkpoint", "query": "q", "page": 1, "cursor": "c1", "end": False},
        {"kind": "checkpoint", "query": "other", "page": 9, "cursor": "zz", "end": False},
    ]:
        w.append(rec)
    w.close()
    state = ResumeState.load(path, "q")
    assert state.done == {1} and state.gone == {3} and list(state.failed) == [2]
    assert state.resume_position()["cursor"] == "c1"
    w = ManifestWriter(path)
    w.append({"kind": "checkpoint", "query": "q", "page": 2, "cursor": None, "end": True})
    w.close()
    assert ResumeState.load(path, "q").resume_position() is None  # a finished feed restarts from the top
