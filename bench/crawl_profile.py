"""One unthrottled crawl of the ceiling's simulator under cProfile: its top functions by own and by
cumulative time, for the `ceiling` group's report (full mode only; profiling slows the crawl ~2x, so
its times are for reading proportions, not rates)."""

from __future__ import annotations

import io
import pstats
from pathlib import Path
from typing import Any

from bench.common import CONCURRENCY, ROOT, UNTHROTTLED, crawl_cmd, fresh_dir, retire, settle_disk
from bench.procs import SimProcess, run


def profile_crawl(work: Path, sim: SimProcess, n: int, logs: Path) -> dict[str, Any]:
    out = fresh_dir(work / "out")
    prof = work / "crawl.prof"
    settle_disk()
    result = run(crawl_cmd(out, sim.api_base, "--concurrency", str(CONCURRENCY), *UNTHROTTLED, profile=prof),
                 logs / "profile.log", 600)
    retire(out)
    if result.rc != 0 or not prof.exists():
        return {"error": f"profiled crawl failed: rc {result.rc}; {result.log_tail[-300:]!r}"}
    stats = pstats.Stats(str(prof), stream=io.StringIO())
    rows = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{_short(filename)}:{line}({func})", "ncalls": nc, "tottime": tt, "cumtime": ct})
    top_tot = sorted(rows, key=lambda r: -r["tottime"])[:15]
    top_cum = sorted(rows, key=lambda r: -r["cumtime"])[:15]
    return {"images": n, "wall_s": round(result.wall, 2), "cpu_s": round(result.cpu, 2),
            "top_tottime": _round_rows(top_tot), "top_cumtime": _round_rows(top_cum)}


def _short(filename: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _round_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "tottime": round(r["tottime"], 3), "cumtime": round(r["cumtime"], 3)} for r in rows]
