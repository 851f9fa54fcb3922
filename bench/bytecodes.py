"""Group `bytecodes`: the Python bytecodes our crawl and the bare loop execute per image, by whose code.

Where the `instructions` group says how much more the interpreter works for us (libpython's row), this
one says on what: every function's bytecodes are counted (`trace_ops.py`, sys.settrace), and per image =
(a 1,000-image run - a 500-image run) / 500, so start-up drops out. Grouped by owner -- each of our
stages (crawler/feed, fetch, net, store, state, run, ...), the HTTP client (aiohttp, yarl, multidict),
asyncio, aiolimiter -- and our busiest functions listed. A bytecode costs the interpreter ~30
instructions on average, so a row's share of the interpreter's instructions is about its share here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from bench.common import (
    BENCH,
    CEILING_BODY,
    CONCURRENCY,
    PY,
    ROOT,
    UNTHROTTLED,
    Report,
    crawl_cmd,
    fresh_dir,
    list_urls,
    per_image,
)
from bench.procs import Child, SimProcess

SIZES = (500, 1_000)
TOP = 12


def owner(key: str) -> str:
    """Whose code a "path:line:function" key is: one of our stages, a library, asyncio, or the bare loop."""
    path = key.rsplit(":", 2)[0]
    if path == "<string>":
        return "crawler (generated __init__)"  # dataclasses' __init__ of our records and jobs
    crawler = f"{ROOT}/crawler/"
    if path.startswith(crawler):
        parts = path[len(crawler):].split("/")
        return f"crawler/{parts[0]}" if len(parts) > 1 else "crawler (top-level modules)"
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if path.startswith(str(BENCH)):
        return "bare loop's own"
    return "asyncio" if "/asyncio/" in path else "stdlib, other"


def traced(name: str, cmds: dict[int, list[str]], work: Path) -> dict[int, dict[str, int]]:
    """Each size's command under the tracer, one after the other (each keeps a core busy)."""
    result = {}
    for n, cmd in cmds.items():
        out = work / f"bytecodes-{name}-{n}.json"
        ran = Child([PY, str(BENCH / "trace_ops.py"), str(out), *cmd[1:]], work / "logs" / f"bytecodes-{name}-{n}.log",
                    900).wait()
        if ran.rc != 0 or ran.timed_out:
            raise RuntimeError(f"{name} {n} traced: rc {ran.rc}, timed out {ran.timed_out}: {ran.log_tail[-300:]!r}")
        result[n] = orjson.loads(out.read_bytes())
        out.unlink()
    return result


def bytecodes(args: argparse.Namespace, report: Report, work: Path) -> dict[str, Any]:
    report.print(f"\n12. Python bytecodes per image (sys.settrace; {SIZES[1]} minus {SIZES[0]} images of "
                 f"~{CEILING_BODY // 1024} KB, concurrency {CONCURRENCY})")
    with SimProcess(["--images", str(SIZES[1]), "--body-bytes", str(CEILING_BODY), "--prewarm"],
                    work / "logs" / "sim-bytecodes.log") as sim:
        urls = list_urls(sim.api_base)[:SIZES[1]]
        ours = traced("ours", {n: crawl_cmd(fresh_dir(work / f"bytecodes-ours-{n}"), sim.api_base, "--concurrency",
                                            str(CONCURRENCY), *UNTHROTTLED, "--max-images", str(n)) for n in SIZES}, work)
        bare_cmds = {}
        for n in SIZES:
            url_file = work / f"bytecodes-urls-{n}.txt"
            url_file.write_text("\n".join(urls[:n]) + "\n")
            bare_cmds[n] = [PY, str(BENCH / "bare.py"), str(url_file), str(fresh_dir(work / f"bytecodes-bare-{n}")),
                            str(CONCURRENCY)]
        bare = traced("bare", bare_cmds, work)
    ours_fn, bare_fn = per_image(ours), per_image(bare)
    by_owner: dict[str, list[float]] = {}
    for fns, column in ((ours_fn, 0), (bare_fn, 1)):
        for key, n in fns.items():
            by_owner.setdefault(owner(key), [0.0, 0.0])[column] += n
    report.print(f"   {'whose code':30s} {'ours/image':>11s} {'bare/image':>11s}")
    for name, (a, b) in sorted(by_owner.items(), key=lambda kv: -max(kv[1])):
        if max(a, b) >= 5:
            report.print(f"   {name:30s} {a:11.0f} {b:11.0f}")
    total = [sum(v[0] for v in by_owner.values()), sum(v[1] for v in by_owner.values())]
    ours_own = sum(a for name, (a, _b) in by_owner.items() if name.startswith("crawler"))
    report.print(f"   {'all':30s} {total[0]:11.0f} {total[1]:11.0f}   ours/bare {total[0] / total[1]:.2f}; "
                 f"our own code {ours_own:.0f} ({100 * ours_own / total[0]:.0f} %)")
    top = sorted(((n, k) for k, n in ours_fn.items() if owner(k).startswith("crawler")), reverse=True)[:TOP]
    report.print("   our busiest functions (bytecodes/image): " + ", ".join(
        f"{k.rsplit(':', 2)[0].split('/crawler/', 1)[-1]}:{k.rsplit(':', 1)[1]} {n:.0f}" for n, k in top))
    return {"per_image": {"ours": round(total[0]), "bare": round(total[1]), "ours_own": round(ours_own)},
            "by_owner": {name: [round(a, 1), round(b, 1)] for name, (a, b) in by_owner.items()},
            "top": [[k, round(n, 1)] for n, k in top]}
