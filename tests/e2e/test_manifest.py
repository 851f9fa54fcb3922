"""The manifest log: append, torn and garbage lines, resume state."""

import orjson

from crawler.state import resume
from crawler.state.manifest import ManifestWriter, iter_records


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
    state = resume.load(path, "q")
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
    state = resume.load(path, "q")
    assert state.done == {1} and state.gone == {3} and list(state.failed) == [2]
    assert state.resume_position()["cursor"] == "c1"
    w = ManifestWriter(path)
    w.append({"kind": "checkpoint", "query": "q", "page": 2, "cursor": None, "end": True})
    w.close()
    assert resume.load(path, "q").resume_position() is None  # a finished feed restarts from the top


def _write_log(path, rng, n, start=0):
    w = ManifestWriter(path)
    for i in range(start, start + n):
        key = rng.randrange(5000) if rng.random() < 0.9 else f"{rng.randrange(16**8):08x}-0000-4000-8000-000000000000"
        w.append({"kind": "image", "id": key if isinstance(key, int) else None,
                  "uuid": key if isinstance(key, str) else None,
                  "status": rng.choice(["done", "done", "failed", "gone"]), "item": {"n": i}})
        if i % 97 == 0:
            w.append({"kind": "checkpoint", "query": rng.choice(["q", "r"]), "page": i, "cursor": str(i), "end": False})
        if i % 333 == 0:
            w.append({"kind": "durable", "upto": w.offset})
        if i % 1000 == 0:
            w.append({"kind": "hwm", "query": "q", "created_at": f"2025-01-{1 + i % 28:02d}T00:00:00Z"})
    w.close()


def _view(state):
    return (state.done, state.gone, {k: r["item"] for k, r in state.failed.items()}, state.checkpoint,
            state.high_water, [(r["id"], r["uuid"]) for r in state.unverified], state.bad_lines)


def test_snapshot_then_tail_equals_reading_the_whole_log(tmp_path, monkeypatch):
    import random

    from crawler.state import snapshot
    monkeypatch.setattr(snapshot, "WORTH_SAVING", 100)
    path = tmp_path / "manifest.jsonl"
    rng = random.Random(5)
    _write_log(path, rng, 3000)
    with open(path, "ab") as f:
        f.write(b"garbage line\n")
    first = resume.load(path, "q")
    assert (tmp_path / snapshot.NAME).exists()
    _write_log(path, rng, 2000, start=3000)
    with open(path, "ab") as f:
        f.write(b"more garbage\n")
    from_snapshot = resume.load(path, "q")
    full = resume.load(path, "q", snapshots=False)
    assert _view(from_snapshot) == _view(full) and len(full.done) > 1000
    assert from_snapshot.bad_lines == full.bad_lines and len(full.bad_lines) == 2
    assert resume.load(path, "r").checkpoint == resume.load(path, "r", snapshots=False).checkpoint
    assert _view(first) != _view(full)


def test_a_stale_snapshot_is_ignored(tmp_path, monkeypatch):
    import random

    from crawler.state import snapshot
    monkeypatch.setattr(snapshot, "WORTH_SAVING", 10)
    path = tmp_path / "manifest.jsonl"
    _write_log(path, random.Random(6), 500)
    resume.load(path, "q")
    # The log is replaced by another one (as compaction does): same size is not enough to fool it.
    data = path.read_bytes()
    path.unlink()
    _write_log(path, random.Random(7), 500)
    assert _view(resume.load(path, "q")) == _view(resume.load(path, "q", snapshots=False))
    # Rewritten in place with other content (same inode).
    with open(path, "r+b") as f:
        f.write(data[: len(data) // 2])
        f.truncate()
    assert _view(resume.load(path, "q")) == _view(resume.load(path, "q", snapshots=False))
