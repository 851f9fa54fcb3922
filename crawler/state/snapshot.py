"""A saved fold of the manifest, so starting a mirror of millions reads only what was appended since.

`DIR/.resume-snapshot` holds the `ResumeState` fold (done and gone sets as roaring bitmaps, failures,
checkpoints, markers) and the manifest bytes it covers. It is a cache: it is used only if the
manifest is the same file (inode, device) and its covered bytes still end the same way (a hash of
the last 4 KiB), else it is ignored and rebuilt. Never fsynced (`files.write_whole`): losing it costs
one full read, and one cut short by a power loss fails to parse and is ignored like a stale one.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import orjson

from crawler.keys import KeySet
from crawler.state.files import write_whole
from crawler.state.fold import ResumeState
from crawler.state.records import key_of

NAME = ".resume-snapshot"
VERSION = 2  # 2: the tail may be held as byte ranges (`spans`)
WORTH_SAVING = 50_000  # records read beyond the snapshot before a new one is written
_PROBE = 4096


def _tail_hash(path: Path, covered: int) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, covered - _PROBE))
        return hashlib.sha256(f.read(min(covered, _PROBE))).hexdigest()


def _lines(path: Path, start: int, covered: int) -> int:
    count = 0
    with open(path, "rb") as f:
        f.seek(start)
        left = covered - start
        while left > 0:
            chunk = f.read(min(left, 1 << 22))
            if not chunk:
                break
            count += chunk.count(b"\n")
            left -= len(chunk)
    return count


def save(manifest: Path, state: ResumeState, end: tuple[int, int] | None = None) -> None:
    """`state` must be the fold of the whole file as it is now (loaded, then fed every append since).

    `end` = (bytes, lines) of the file, when its writer knows them (`ManifestWriter.end`); else the
    lines appended since the state's `covered` point are counted from the file.
    """
    if state.tainted:
        return
    st = os.stat(manifest)
    if end is not None:
        covered, lines = end
    else:
        covered = st.st_size
        lines = state.lines + _lines(manifest, min(state.covered, covered), covered)
    if covered > st.st_size:
        return  # not all of it reached the file (a failed write): no snapshot rather than a wrong one
    header = {"version": VERSION, "covered": covered, "lines": lines, "ino": st.st_ino,
              "dev": st.st_dev, "tail": _tail_hash(manifest, covered)}
    meta = {
        "done_strs": sorted(state.done.strs), "gone_strs": sorted(state.gone.strs),
        "failed": list(state.failed.values()), "durable_upto": state.durable_upto,
        "tail": state.tail, "spans": state.spans, "checkpoints": state.checkpoints, "high_waters": state.high_waters,
        "refs": None if state.refs is None else [[k, s] for k, s in state.refs],
        "by_uuid": state.by_uuid, "bad_lines": state.bad_lines, "records": state.records,
    }
    sections = [orjson.dumps(header), orjson.dumps(meta), state.done.serialize(), state.gone.serialize()]
    write_whole(manifest.parent / NAME, [piece for section in sections
                                         for piece in (struct.pack("<Q", len(section)), section)])
    state.covered, state.lines = covered, lines


def load(manifest: Path, models: bool) -> ResumeState | None:
    """The saved fold, with `covered` and `lines` set, or None when absent, stale or not what is needed."""
    try:
        with open(manifest.parent / NAME, "rb") as f:
            data = f.read()
        sections = []
        at = 0
        for _ in range(4):
            (size,) = struct.unpack_from("<Q", data, at)
            sections.append(data[at + 8:at + 8 + size])
            at += 8 + size
        header = orjson.loads(sections[0])
        st = os.stat(manifest)
        if (header.get("version") != VERSION or header["ino"] != st.st_ino or header["dev"] != st.st_dev
                or header["covered"] > st.st_size or _tail_hash(manifest, header["covered"]) != header["tail"]):
            return None
        meta = orjson.loads(sections[1])
        if models and meta["refs"] is None:
            return None  # saved by a crawl of the feed: no uuid index; read the whole log once
        state = ResumeState(
            done=KeySet.deserialize(sections[2], meta["done_strs"]),
            gone=KeySet.deserialize(sections[3], meta["gone_strs"]),
            failed={key_of(r): r for r in meta["failed"]},  # type: ignore[misc]
            refs=None if not models else {(k, s) for k, s in meta["refs"]},
            by_uuid=meta["by_uuid"] if models else None,
            bad_lines=meta["bad_lines"], records=meta["records"], durable_upto=meta["durable_upto"],
            tail=[(o, r) for o, r in meta["tail"]],
            spans=[(first, end, lo) for first, end, lo in meta["spans"]],
            checkpoints={q: [(o, r) for o, r in entries] for q, entries in meta["checkpoints"].items()},
            high_waters=meta["high_waters"],
        )
    except (OSError, ValueError, KeyError, TypeError, struct.error, orjson.JSONDecodeError):
        return None
    state.covered = header["covered"]
    state.lines = header["lines"]
    return state
