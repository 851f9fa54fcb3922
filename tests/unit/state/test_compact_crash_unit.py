"""state/compact.py under kill -9 at each step that matters: while the new file is written, at its fsync,
at the rename and just after it. A child process compacts a real manifest and SIGKILLs itself at the
chosen step; before the rename the manifest must be byte-identical to what it was, after it the
compacted file must fold to the same state. The next compaction clears what the killed one left.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys

import orjson
import pytest

from crawler.state import compact as compact_mod
from crawler.state import resume
from crawler.state.manifest import MANIFEST_NAME

pytestmark = pytest.mark.timeout(60)

CHILD = r"""
import os, signal, sys
from pathlib import Path
from crawler.state import compact

step, root = sys.argv[1], Path(sys.argv[2])
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if step == "write":  # the second read of the log is the write loop: die a few hundred records in
    real = compact.iter_records_at
    calls = []
    def reading(*a, **k):
        calls.append(1)
        for n, item in enumerate(real(*a, **k)):
            if len(calls) == 2 and n == 300:
                die()
            yield item
    compact.iter_records_at = reading
elif step == "fsync":
    compact.os.fsync = die
elif step == "replace":
    compact.os.replace = die
elif step == "after":  # renamed; the folder's fsync is next
    real_open = os.open
    compact.os.open = lambda p, *a, **k: die() if Path(p) == root else real_open(p, *a, **k)
compact.compact(root)
"""


def _mirror(root):  # type: ignore[no-untyped-def]
    rng = random.Random(5)
    with open(root / MANIFEST_NAME, "wb") as f:
        for n in range(3000):
            status = rng.choice(["failed", "done", "gone"])
            f.write(orjson.dumps({"kind": "image", "id": rng.randrange(600), "status": status}) + b"\n")
            if n % 500 == 0:
                f.write(orjson.dumps({"kind": "checkpoint", "query": "q", "page": n, "cursor": str(n),
                                      "end": False}) + b"\n")


def _state(path):  # type: ignore[no-untyped-def]
    state = resume.load(path, "q", snapshots=False)
    return set(state.done), set(state.gone), set(state.failed), state.checkpoint["cursor"]


@pytest.mark.parametrize("step", ["write", "fsync", "replace", "after"])
def test_a_kill_at_any_step_leaves_the_old_file_or_the_new_one_whole(tmp_path, step):
    _mirror(tmp_path)
    manifest = tmp_path / MANIFEST_NAME
    original_bytes = manifest.read_bytes()
    original = _state(manifest)
    child = subprocess.run([sys.executable, "-c", CHILD, step, str(tmp_path)], capture_output=True, text=True,
                           timeout=50)
    assert child.returncode == -signal.SIGKILL, child.stderr
    if step == "after":
        assert manifest.read_bytes() != original_bytes and len(manifest.read_bytes()) < len(original_bytes)
        assert (tmp_path / compact_mod.PREVIOUS).read_bytes() == original_bytes
    else:
        assert manifest.read_bytes() == original_bytes, "the manifest changed before the rename"
        assert (tmp_path / compact_mod.WORKING).exists()
    assert _state(manifest) == original
    result = compact_mod.compact(tmp_path)  # the next compaction: clears the working file, same state
    assert not (tmp_path / compact_mod.WORKING).exists()
    assert _state(manifest) == original
    assert result.records_after < result.records_before or step == "after"  # after: already compacted
