"""Group `latency`: the simulator adds 50 ms to every response; images/s at several concurrencies.

Issue 17's target: where latency, not the wire, bounds the rate (concurrency 128 and 256), our crawl
moves images (between the first and last image request at the simulator) at >= 0.9 x the bare loop.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.ceiling import crawl_check, file_check, measure
from bench.common import BENCH, CEILING_BODY, PY, UNTHROTTLED, Report, crawl_cmd, fmt, fresh_dir, list_urls, retire
from bench.procs import SimProcess


def latency(args: argparse.Namespace, report: Report, work: Path, aria2c: str | None) -> dict[str, Any]:
    latency_ms = 50
    total = 2_000 if args.quick else 4_000
    levels = (8, 32, 128, 256)
    rounds = 1 if args.quick else 2
    report.print(f"\n2. Latency: the simulator adds {latency_ms} ms to every response; {total}-image catalogue "
                 f"(~{CEILING_BODY // 1024} KB), at concurrency c the first " +
                 (f"min({total}, max(400, 25c))" if args.quick else f"min({total}, max(600, 40c))") + " URLs"
                 + (f", best of {rounds} interleaved rounds" if rounds > 1 else ""))
    logs = work / "logs"
    rows = []
    with SimProcess(["--images", str(total), "--body-bytes", str(CEILING_BODY), "--prewarm",
                     "--latency-ms", str(latency_ms)], logs / "sim-latency.log") as sim:
        urls = list_urls(sim.api_base)
        for c in levels:
            n = min(len(urls), max(400, 25 * c) if args.quick else max(600, 40 * c))
            url_file = work / f"urls-{c}.txt"
            url_file.write_text("\n".join(urls[:n]) + "\n")
            tools = _tools(sim.api_base, url_file, c, n, aria2c if not args.quick else None)
            row: dict[str, Any] = {"concurrency": c, "images": n, "ideal_rate": c / (latency_ms / 1000)}
            for r in range(rounds):  # interleaved, the order turned each round; the best round of each is kept
                for name, make, is_crawl in (tools if r % 2 == 0 else tools[::-1]):
                    out = fresh_dir(work / "out")
                    check = crawl_check(n, set(urls[:n])) if is_crawl else file_check(n)
                    one = measure(f"lat{c}-{name}", r, make(out), out, sim, n, logs, 600, check)
                    retire(out)
                    cell = {"rate": one.rate, "xfer_rate": one.xfer_rate, "wall": one.wall, "cpu": one.cpu,
                            "sim_cpu": one.sim_cpu, "ok": one.ok, "note": one.note[:300]}
                    best = row.get(name)
                    if best is None or (cell["ok"], cell["xfer_rate"] or 0) > (best["ok"], best["xfer_rate"] or 0):
                        row[name] = cell
            rows.append(row)
    names = ["bare write", "ours"] + (["aria2c tuned"] if aria2c and not args.quick else [])
    report.print(f"   {'c':>5}{'images':>8}{'ideal/s':>9}" + "".join(f"{n + ' img/s (xfer)':>27}" for n in names))
    for row in rows:
        cells = ""
        for name in names:
            cell = row[name]
            text = f"{cell['rate']:.0f} ({fmt(cell['xfer_rate'])})" + ("" if cell["ok"] else " FAILED")
            cells += f"{text:>27}"
        report.print(f"   {row['concurrency']:>5}{row['images']:>8}{row['ideal_rate']:>9.0f}{cells}")
    report.print("   (ideal = c / 50 ms; img/s over the whole command including start-up; xfer = between the first "
                 "and last image request at the simulator)")
    for row in rows:
        c = row["concurrency"]
        ours, bare = row["ours"], row["bare write"]
        ratio = ours["xfer_rate"] / bare["xfer_rate"] if ours["ok"] and bare["ok"] and ours["xfer_rate"] and \
            bare["xfer_rate"] else None
        row["ours/bare_xfer"] = ratio
        # Same images for both: where both keep a core busy, the rate ratio follows the inverse of this one.
        cpu = ours["cpu"] / bare["cpu"] if ours["ok"] and bare["ok"] and bare["cpu"] else None
        row["ours/bare_cpu"] = cpu
        if c >= 128:
            v = report.target(f"latency c={c}: ours xfer >= 0.9 x bare write", ratio, ">= 0.9",
                              None if ratio is None else ratio >= 0.9)
            report.print(f"   c={c}: ours/bare write (xfer) {fmt(ratio, '.2f')}  (target >= 0.9)  {v}   "
                         f"CPU ours/bare {fmt(cpu, '.2f')} (the rounds shown)")
    failed = [f"c={r['concurrency']} {n}: {r[n]['note']}" for r in rows for n in names if not r[n]["ok"]]
    for line in failed:
        report.print(f"   FAILED {line}")
    return {"latency_ms": latency_ms, "catalogue": total, "rows": rows}


Tool = tuple[str, Callable[[Path], list[str]], bool]  # (name, output folder -> command, is our crawl)


def _tools(api_base: str, url_file: Path, c: int, n: int, aria2c: str | None) -> list[Tool]:
    """The tools measured at concurrency `c` over the first `n` URLs (aria2c only when given)."""

    def bare(d: Path) -> list[str]:
        return [PY, str(BENCH / "bare.py"), str(url_file), str(d), str(c)]

    def ours(d: Path) -> list[str]:
        return crawl_cmd(d, api_base, "--concurrency", str(c), "--max-images", str(n), *UNTHROTTLED)

    def aria(d: Path) -> list[str]:
        assert aria2c is not None
        return [aria2c, "-q", "-i", str(url_file), "-j", str(c), "-x", "1", "-d", str(d), "--auto-save-interval=0",
                "--file-allocation=none"]

    tools: list[Tool] = [("bare write", bare, False), ("ours", ours, True)]
    if aria2c:
        tools.append(("aria2c tuned", aria, False))
    return tools
