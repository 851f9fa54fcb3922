"""Count the Python bytecodes each function executes while a command runs (its main thread).

    python bench/trace_ops.py OUT.json -m MODULE [ARGS...]
    python bench/trace_ops.py OUT.json SCRIPT [ARGS...]

Writes {"path:first line:function": bytecodes} at exit. sys.settrace with opcode events: ~30x slower
than the command alone, but the counts do not depend on the VM's noise, only (a little) on how the
event loop's turns fall. The `bytecodes` group subtracts two sizes of a run to get a per-image count.
"""

import runpy
import sys
from collections import Counter
from types import FrameType
from typing import Any

import orjson


def main() -> None:
    out, target = sys.argv[1], sys.argv[2]
    module = target == "-m"
    sys.argv = sys.argv[3:] if module else sys.argv[2:]
    counts: Counter[str] = Counter()

    def call(frame: FrameType, _event: str, _arg: Any) -> Any:
        frame.f_trace_opcodes = True
        code = frame.f_code
        key = f"{code.co_filename}:{code.co_firstlineno}:{code.co_name}"

        def step(_frame: FrameType, event: str, _arg: Any) -> Any:
            if event == "opcode":
                counts[key] += 1
            return step
        return step

    sys.settrace(call)
    try:
        if module:
            runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        sys.settrace(None)
        with open(out, "wb") as f:
            f.write(orjson.dumps(dict(counts)))


if __name__ == "__main__":
    main()
