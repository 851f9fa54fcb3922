"""state/scan.py against the record-by-record fold: random manifests -- every record kind, ids of
every shape, escaped quotes and braces in prompts, torn, blank, garbage, non-UTF-8 and two-per-line
lines -- folded by `iter_records_at` + `ResumeState.feed` and by `scan.fold` (in one process, from an
offset, and split in two as `scan_parallel` does) must leave the same state, bad line numbers included.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from crawler.state import scan, scan_parallel
from crawler.state.fold import ResumeState
from crawler.state.manifest import iter_records_at

pytestmark = pytest.mark.timeout(120)

QUERIES = ["q", "other"]
PROMPTS = ['a "quoted" word', 'x\\"status\\":\\"failed\\"', '{"kind":"durable","upto":0}', "}\n{", "caf\u00e9 \u732b",
           '\\', "tab\there", '"status":"gone"', "\u2028"]


def _item(rng: random.Random, ident: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"id": ident, "meta": {"prompt": rng.choice(PROMPTS), "cfgScale": 7.5, "steps": 30}}
    if rng.random() < 0.2:
        item["status"] = rng.choice(["done", "failed"])  # a nested "status" key
    if rng.random() < 0.1:
        item["deep"] = orjson.loads("[" * 40 + "]" * 40)
    return item


def _ident(rng: random.Random) -> Any:
    r = rng.random()
    if r < 0.75:
        return rng.randrange(0, 40)  # few ids: the same image is recorded again and again
    return rng.choice([-3, True, 2.0, "7", None, 2**63 - 1, 2**63, "BIG1", "BIG2", 0])


def _record(rng: random.Random, offsets: list[int]) -> dict[str, Any]:
    kind = rng.choices(["image", "checkpoint", "durable", "run", "ref", "hwm", "proof", "other"],
                       [70, 8, 8, 2, 4, 3, 2, 1])[0]
    query = rng.choice(QUERIES + [None])
    if kind == "image":
        ident = _ident(rng)
        status = rng.choices(["done", "failed", "gone", "odd", None], [70, 12, 8, 2, 2])[0]
        record: dict[str, Any] = {"kind": "image", "id": ident, "uuid": rng.choice([None, f"u{rng.randrange(30)}", ""]),
                                  "url": f"http://127.0.0.1:9/{ident}.jpeg"}
        if rng.random() < 0.3:
            record["source"] = rng.choice([f"model:{rng.randrange(3)}/version:1", 5])
        record["status"] = status
        if status == "done":
            record.update(path=f"images/{ident}.jpeg", sha256=f"{rng.getrandbits(256):064x}", bytes=100,
                          width=450, content_type="image/jpeg")
        elif status == "failed":
            record.update(reason="http-500", error=rng.choice(PROMPTS), attempts=1)
        record["item"] = _item(rng, ident)
        record["t"] = rng.choice([0.0, 1700000000.25])
        if rng.random() < 0.05:  # key order and duplicate keys of hand-made or other tools' lines
            record = dict(reversed(list(record.items())))
        return record
    if kind == "durable":
        return {"kind": "durable", "upto": rng.choice(offsets or [0]) + rng.choice([0, 0, 1, -1]), "files": 3,
                "fsync": True}
    if kind == "checkpoint":
        return {"kind": "checkpoint", "query": query, "page": rng.randrange(9), "end": rng.random() < 0.2,
                "cursor": rng.choice(PROMPTS)}
    if kind == "ref":
        return {"kind": "ref", "id": _ident(rng), "uuid": None, "source": rng.choice(["model:1/version:2", 3])}
    if kind == "hwm":
        return {"kind": "hwm", "query": query, "created_at": rng.choice(["2026-01-01", 5])}
    if kind == "run":
        return {"kind": "run", "event": rng.choice(["start", "end"]), "query": query, "counts": {"done": 1}}
    if kind == "proof":
        return {"kind": "proof", "deep": False, "depth_cap": 3, "capped": [], "gaps": []}
    return {"kind": rng.choice([5, None, "something-else"]), "id": 1, "status": "done"}


def _line(rng: random.Random, offsets: list[int]) -> bytes:
    """One line as a writer, a crash or another tool may leave it (with its newline)."""
    # Integers orjson cannot write: those past 64 bits, which it reads as floats.
    good = orjson.dumps(_record(rng, offsets)).replace(b'"BIG1"', b"18446744073709551621").replace(
        b'"BIG2"', b"1000000000000000000000000000000")
    damage = rng.random()
    if damage < 0.80:
        return good + b"\n"
    return rng.choice([
        lambda: good[: rng.randrange(1, len(good))] + b"\n",  # torn
        lambda: b"\n", lambda: b"   \n", lambda: good + b"\r\n", lambda: b"  " + good + b" \n",
        lambda: good + good + b"\n", lambda: good + b" " + good + b"\n",  # two on one line
        lambda: good.replace(b",", b",\n", 1) + b"\n",  # one record over two lines
        lambda: good.replace(b"http", b"ht\xfftp", 1) + b"\n",  # not UTF-8
        lambda: good.replace(b'"url":"', b'"url":"\xed\xa0\x80', 1) + b"\n",  # an encoded surrogate
        lambda: good[:20] + b"\x00" * 30 + good[20:] + b"\n",
        lambda: b"[1,2]\n", lambda: b"42\n", lambda: b"garbage{\n", lambda: b'{"kind":"image"' + b"\n",
        lambda: good.replace(b'"t":', b'"t":' + b"[" * 600, 1) + b"]" * 600 + b"\n",  # deep nesting
        lambda: good.replace(b'{"kind":"image"', b'{"kind":"image","status":"failed"', 1) + b"\n",
    ])()


def _manifest(path: Path, seed: int, lines: int) -> None:
    rng = random.Random(seed)
    data = bytearray()
    offsets: list[int] = []
    for _ in range(lines):
        offsets.append(len(data))
        data += _line(rng, offsets)
    if rng.random() < 0.5:
        data += orjson.dumps(_record(rng, offsets))[: rng.randrange(1, 30)]  # a torn last line, no newline
    path.write_bytes(bytes(data))


def _old(path: Path, models: bool, start: int = 0) -> tuple[ResumeState, list[int]]:
    state = ResumeState(refs=set() if models else None, by_uuid={} if models else None)
    progress = [start, 0]
    for offset, record in iter_records_at(path, lambda n, _raw: state.bad_lines.append(n), start=start,
                                          progress=progress):
        state.feed(offset, record)
    return state, progress


def _view(state: ResumeState) -> dict[str, Any]:
    return {"done": sorted(map(repr, state.done)), "gone": sorted(map(repr, state.gone)), "failed": state.failed,
            "checkpoints": state.checkpoints, "durable_upto": state.durable_upto, "tail": state.tail,
            "high_waters": state.high_waters, "refs": state.refs, "by_uuid": state.by_uuid,
            "bad_lines": state.bad_lines, "records": state.records}


@pytest.mark.parametrize("block", [23, 512, 1 << 16])
@pytest.mark.parametrize("seed", range(12))
def test_folds_like_the_record_by_record_fold(tmp_path, monkeypatch, seed, block):
    monkeypatch.setattr(scan, "BLOCK", block)
    path = tmp_path / "manifest.jsonl"
    _manifest(path, seed, 400)
    for models in (False, True):
        old, progress = _old(path, models)
        new = ResumeState(refs=set() if models else None, by_uuid={} if models else None)
        folded = scan.fold(path, new, on_bad_line=lambda n, _raw, s=new: s.bad_lines.append(n))
        scan.settle(path, new)
        assert _view(new) == _view(old)
        assert (folded.covered, folded.lines) == tuple(progress)
        assert folded.records == old.records


@pytest.mark.parametrize("seed", range(12, 20))
def test_from_an_offset_and_in_two_parts_as_in_one(tmp_path, monkeypatch, seed):
    monkeypatch.setattr(scan, "BLOCK", 97)
    path = tmp_path / "manifest.jsonl"
    _manifest(path, seed, 400)
    data = path.read_bytes()
    start = data.index(b"\n", len(data) // 5) + 1  # where a snapshot may have stopped
    mid = data.index(b"\n", len(data) // 2) + 1
    old, progress = _old(path, False, start)
    new = ResumeState()
    folded = scan.fold(path, new, start, lambda n, _raw: new.bad_lines.append(n), end=mid)
    log, covered, lines = scan.record(path, mid)
    records = scan.replay(log, new, lambda n, _raw: new.bad_lines.append(n), lines_before=folded.lines)
    scan.settle(path, new)
    assert _view(new) == _view(old)
    assert (covered, folded.lines + lines) == tuple(progress) and folded.records + records == old.records


@pytest.mark.parametrize("cpus", [2, 3])
def test_child_processes_fold_like_one(tmp_path, monkeypatch, cpus):
    """`scan_parallel.fold` over real child processes gives the same state as the fold in one."""
    monkeypatch.setattr(scan_parallel, "MIN_BYTES", 0)
    path = tmp_path / "manifest.jsonl"
    _manifest(path, 99, 3000)
    old, progress = _old(path, False)
    new = ResumeState()
    folded = scan_parallel.fold(path, new, 0, lambda n, _raw: new.bad_lines.append(n), cpus=cpus)
    assert folded.parts == cpus
    scan.settle(path, new)
    assert _view(new) == _view(old)
    assert (folded.covered, folded.lines, folded.records) == (*progress, old.records)


def test_a_missing_manifest_folds_nothing(tmp_path):
    state = ResumeState()
    assert scan.fold(tmp_path / "absent.jsonl", state, 7) == scan.Folded(7, 0, 0)
    assert state.records == 0 and not state.done


def test_a_number_beyond_a_double_is_the_one_known_difference(tmp_path):
    """orjson refuses 1e400 (no writer emits it); the fast path skips what it does not need."""
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(b'{"kind":"image","id":5,"status":"done","t":1e400}\n')
    old, _ = _old(path, False)
    new = ResumeState()
    scan.fold(path, new, on_bad_line=lambda n, _raw: new.bad_lines.append(n))
    assert old.bad_lines == [1] and not old.done
    assert new.bad_lines == [] and set(new.done) == {5}


def test_a_child_that_cannot_start_leaves_its_part_to_this_process(tmp_path, monkeypatch):
    monkeypatch.setattr(scan_parallel, "MIN_BYTES", 0)
    monkeypatch.setattr(scan_parallel.sys, "executable", str(tmp_path / "no-python"))
    path = tmp_path / "manifest.jsonl"
    _manifest(path, 7, 1000)
    old, progress = _old(path, False)
    new = ResumeState()
    folded = scan_parallel.fold(path, new, 0, lambda n, _raw: new.bad_lines.append(n), cpus=3)
    assert folded.parts == 1
    scan.settle(path, new)
    assert _view(new) == _view(old)
    assert (folded.covered, folded.lines, folded.records) == (*progress, old.records)


@pytest.mark.parametrize("failures", [1, 50])
def test_a_run_of_done_records_settles_earlier_failures_and_gones(tmp_path, failures):
    """Few failures and a long run, or many failures and a short run: either way the run wins."""
    lines = [{"kind": "image", "id": k, "status": "failed", "reason": "x"} for k in range(100, 100 + failures)]
    lines += [{"kind": "image", "id": 7, "status": "gone"}, {"kind": "image", "uuid": "u", "status": "failed"}]
    lines += [{"kind": "image", "id": k, "status": "done"} for k in (3, 100, 7, 5, 6)]
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
    old, _ = _old(path, False)
    new = ResumeState()
    scan.fold(path, new)
    scan.settle(path, new)
    assert 100 not in new.failed and "u" in new.failed and 7 not in new.gone and 7 in new.done
    assert _view(new) == _view(old)


def test_a_snapshot_keeps_the_unbuilt_tail_until_a_marker_needs_it(tmp_path, monkeypatch):
    """A log without markers is saved with its tail as byte ranges; once markers are appended, the
    load from that snapshot re-checks the same records as a load of the whole log."""
    from crawler.state import resume, snapshot

    monkeypatch.setattr(snapshot, "WORTH_SAVING", 10)
    path = tmp_path / "manifest.jsonl"
    done = [{"kind": "image", "id": k, "uuid": f"u{k}", "status": "done", "path": f"images/{k}.jpeg",
             "sha256": "h"} for k in range(50)]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in done))
    first = resume.load(path, "q")
    assert first.durable_upto is None and first.unverified == [] and first.spans  # nothing built
    assert (tmp_path / snapshot.NAME).exists()
    size = path.stat().st_size
    more = [{"kind": "durable", "upto": size - 200, "files": 1, "fsync": True}, done[3]]
    with open(path, "ab") as f:
        f.write(b"".join(orjson.dumps(r) + b"\n" for r in more))
    again, whole = resume.load(path, "q"), resume.load(path, "q", snapshots=False)
    assert again.unverified == whole.unverified and [r["id"] for r in whole.unverified] == [48, 49, 3]
    assert again.spans == [] and _view(again) == _view(whole)
