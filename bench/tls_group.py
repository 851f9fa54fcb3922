"""Groups `tls` and `large`: the ceiling's comparison (our crawl against the bare loop) over HTTPS as the
real CDN serves it, and at 2 MB originals, each next to the same comparison over plain HTTP.

Two simulators run at once, one plain and one with a test CA (`--tls`); the four runs of a round
(plain bare, plain ours, TLS bare, TLS ours) are interleaved and the order turns each round. Reported:
images/s, MB/s, CPU per image and per MB, TLS handshakes per 1,000 images (counted at the simulator,
connection reuse), and ratios per round with their median. The bare loop trusts the CA through
SSL_CERT_FILE, the crawl through --ca-file. A failed run is reported (its note kept), never raised.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import ssl
import statistics
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.ceiling import Run, crawl_check, file_check, measure
from bench.common import (
    BENCH,
    CEILING_BODY,
    CEILING_IMAGES,
    CONCURRENCY,
    PY,
    UNTHROTTLED,
    Report,
    crawl_cmd,
    fmt,
    fresh_dir,
    list_urls,
    retire,
)
from bench.procs import SimProcess, run

LARGE_BODY = 2 * 1024 * 1024
TOOLS = ("bare write", "ours")
NO_FSYNC = "ours --no-fsync"  # large only: how much of the gap at 2 MB is the fsync of each file


@dataclass(frozen=True)
class Side:
    """One simulator of the comparison and what a client needs to reach it."""

    proto: str  # "http" | "https"
    sim: SimProcess
    url_file: Path
    urls: frozenset[str]
    ca_file: Path | None


def tls_group(args: argparse.Namespace, report: Report, work: Path) -> dict[str, Any]:
    images = 1_000 if args.quick else CEILING_IMAGES
    rounds = 2 if args.quick else 4
    report.print(f"\nTLS: {images} images of ~{CEILING_BODY // 1024} KB, concurrency {CONCURRENCY}, plain HTTP and "
                 f"HTTPS side by side, {rounds} interleaved rounds (median of the per-round ratios)")
    return _compare(work, report, "tls", images, CEILING_BODY, rounds, TOOLS)


def large_group(args: argparse.Namespace, report: Report, work: Path) -> dict[str, Any]:
    images = 80 if args.quick else 400
    rounds = 2 if args.quick else 4
    report.print(f"\nLarge originals: {images} images of ~{LARGE_BODY // 2**20} MB, concurrency {CONCURRENCY}, plain "
                 f"HTTP and HTTPS side by side, {rounds} interleaved rounds (median of the per-round ratios)")
    return _compare(work, report, "large", images, LARGE_BODY, rounds, (*TOOLS, NO_FSYNC))


def _compare(work: Path, report: Report, name: str, images: int, body: int, rounds: int,
             tools: tuple[str, ...]) -> dict[str, Any]:
    logs = work / "logs"
    sim_args = ["--images", str(images), "--body-bytes", str(body), "--prewarm"]
    ca = work / f"{name}-ca.pem"
    with SimProcess(sim_args, logs / f"sim-{name}-http.log") as plain_sim, \
            SimProcess([*sim_args, "--tls", "--tls-ca-file", str(ca)], logs / f"sim-{name}-https.log") as tls_sim:
        sides = [_side(work, name, "http", plain_sim, None), _side(work, name, "https", tls_sim, ca)]
        for side in sides:  # warm-up (not measured): code pages, the simulator's sockets and allocator
            with _trusting(side.ca_file):
                run([PY, str(BENCH / "bare.py"), str(side.url_file), "-", str(CONCURRENCY)],
                    logs / f"{name}-warmup-{side.proto}.log", 300)
        runs: list[tuple[str, Run, int | None]] = []  # (proto, run, TLS handshakes during it)
        plan = [(side, tool) for side in sides for tool in tools]
        for r in range(rounds):
            for side, tool in plan[r % len(plan):] + plan[:r % len(plan)]:
                one, handshakes = _one(work, logs, name, side, tool, r)
                runs.append((side.proto, one, handshakes))
                shakes = "" if handshakes is None else f"  {handshakes} handshakes"
                report.print(f"   round {r + 1}: {side.proto:<5} {tool:<15} {one.rate:7.0f} img/s "
                             f"{one.bytes / one.wall / 1e6:7.1f} MB/s  cpu {one.cpu:5.2f}s  sim cpu {one.sim_cpu:5.2f}s"
                             + shakes + ("" if one.ok else f"  FAILED: {one.note[:300]}"))
    return _summary(report, runs, rounds, images, body, tools)


def _side(work: Path, name: str, proto: str, sim: SimProcess, ca: Path | None) -> Side:
    with _trusting(ca):
        urls = list_urls(sim.api_base)
    if not all(u.startswith(proto + "://") for u in urls):
        raise RuntimeError(f"the {proto} simulator lists URLs of another scheme, e.g. {urls[0]}")
    url_file = work / f"{name}-urls-{proto}.txt"
    url_file.write_text("\n".join(urls) + "\n")
    return Side(proto, sim, url_file, frozenset(urls), ca)


@contextlib.contextmanager
def _trusting(ca: Path | None) -> Iterator[None]:
    """SSL_CERT_FILE=ca for this process and its children (the bare loop, urllib) while the block runs."""
    if ca is None:
        yield
        return
    before = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(ca)
    try:
        yield
    finally:
        if before is None:
            del os.environ["SSL_CERT_FILE"]
        else:
            os.environ["SSL_CERT_FILE"] = before


def _one(work: Path, logs: Path, group: str, side: Side, tool: str, round_no: int) -> tuple[Run, int | None]:
    out = fresh_dir(work / "out")
    n = len(side.urls)
    if tool != "bare write":
        extra = ["--ca-file", str(side.ca_file)] if side.ca_file is not None else []
        extra += ["--no-fsync"] if tool == NO_FSYNC else []
        cmd = crawl_cmd(out, side.sim.api_base, "--concurrency", str(CONCURRENCY), *UNTHROTTLED, *extra)
        check = crawl_check(n, set(side.urls))
    else:
        cmd = [PY, str(BENCH / "bare.py"), str(side.url_file), str(out), str(CONCURRENCY)]
        check = file_check(n)
    before = _handshakes(side)
    with _trusting(side.ca_file if tool == "bare write" else None):
        # The group in the name keeps each run's log apart from the other group's (logs/NAME-rN.log).
        one = measure(f"{group}-{_slug(side.proto, tool)}", round_no, cmd, out, side.sim, n, logs, 600, check)
    one.tool = _slug(side.proto, tool)
    after = _handshakes(side)
    retire(out)
    # The second reading's own connection is one handshake of its own: not the client's.
    return one, None if before is None or after is None else after - before - 1


def _slug(proto: str, tool: str) -> str:
    return f"{proto}-{tool.replace(' ', '-')}"


def _handshakes(side: Side) -> int | None:
    """TLS handshakes the simulator began so far (`GET /_sim/tls`); None over plain HTTP."""
    if side.ca_file is None:
        return None
    origin = side.sim.api_base.removesuffix("/api/v1")
    context = ssl.create_default_context(cafile=str(side.ca_file))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    with opener.open(f"{origin}/_sim/tls", timeout=30) as response:
        return int(json.loads(response.read())["handshakes"])


def _summary(report: Report, runs: list[tuple[str, Run, int | None]], rounds: int, images: int,
             body: int, tools: tuple[str, ...]) -> dict[str, Any]:
    def of(proto: str, tool: str) -> list[tuple[Run, int | None]]:
        return [(x, h) for _, x, h in runs if x.tool == _slug(proto, tool)]

    rows: dict[str, dict[str, Any]] = {}
    report.print(f"\n   {'':<22}{'img/s':>7}{'MB/s':>7}{'ms CPU/img':>11}{'ms CPU/MB':>10}{'hs/1k img':>10}"
                 f"{'sim %':>6}  (medians of {rounds} rounds)")
    for proto in ("http", "https"):
        for tool in tools:
            mine = of(proto, tool)
            good = [(x, h) for x, h in mine if x.ok]
            key = f"{proto} {tool}"
            if not good:
                rows[key] = {"ok": False, "notes": [x.note for x, _ in mine]}
                report.print(f"   {key:<22} FAILED")
                continue
            shakes = [1000 * h / x.images for x, h in good if h is not None]
            rows[key] = {
                "ok": len(good) == len(mine),
                "rate": statistics.median(x.rate for x, _ in good),
                "mb_s": statistics.median(x.bytes / x.wall / 1e6 for x, _ in good),
                "cpu_ms_per_image": statistics.median(1000 * x.cpu / x.images for x, _ in good),
                "cpu_ms_per_mb": statistics.median(1000 * x.cpu / (x.bytes / 1e6) for x, _ in good),
                "handshakes_per_1000": statistics.median(shakes) if shakes else None,
                "sim_busy": max(x.sim_cpu / x.wall for x, _ in good),
                "runs": [{**asdict(x), "handshakes": h} for x, h in mine],
            }
            m = rows[key]
            report.print(f"   {key:<22}{m['rate']:7.0f}{m['mb_s']:7.1f}{m['cpu_ms_per_image']:11.2f}"
                         f"{m['cpu_ms_per_mb']:10.2f}{fmt(m['handshakes_per_1000'], '.1f'):>10}"
                         f"{100 * m['sim_busy']:5.0f}%")
    ratios = {
        "http ours/bare rate": _ratios(runs, "http", "ours", "http", "bare write", "rate"),
        "https ours/bare rate": _ratios(runs, "https", "ours", "https", "bare write", "rate"),
        "http ours/bare cpu": _ratios(runs, "http", "ours", "http", "bare write", "cpu"),
        "https ours/bare cpu": _ratios(runs, "https", "ours", "https", "bare write", "cpu"),
        "ours https/http rate": _ratios(runs, "https", "ours", "http", "ours", "rate"),
        "bare https/http rate": _ratios(runs, "https", "bare write", "http", "bare write", "rate"),
        "ours https/http cpu": _ratios(runs, "https", "ours", "http", "ours", "cpu"),
        "bare https/http cpu": _ratios(runs, "https", "bare write", "http", "bare write", "cpu"),
    }
    if NO_FSYNC in tools:
        ratios["http no-fsync/bare rate"] = _ratios(runs, "http", NO_FSYNC, "http", "bare write", "rate")
        ratios["https no-fsync/bare rate"] = _ratios(runs, "https", NO_FSYNC, "https", "bare write", "rate")
    report.print("   ratios (median, per round):")
    for label, per_round in ratios.items():
        median = statistics.median(per_round) if per_round else None
        report.print(f"   {label:<25} {fmt(median, '.2f')}   {per_round}")
    return {"images": images, "body_bytes": body, "concurrency": CONCURRENCY, "rounds": rounds, "rows": rows,
            "ratios": {k: {"median": statistics.median(v) if v else None, "per_round": v} for k, v in ratios.items()}}


def _ratios(runs: list[tuple[str, Run, int | None]], proto_a: str, tool_a: str, proto_b: str, tool_b: str,
            what: str) -> list[float]:
    """a/b per round where both ran cleanly; `rate` is images/s, `cpu` is CPU seconds per byte written."""
    def pick(proto: str, tool: str, r: int) -> Run | None:
        found = [x for _, x, _ in runs if x.tool == _slug(proto, tool) and x.round == r and x.ok]
        return found[0] if found else None

    out = []
    for r in sorted({x.round for _, x, _ in runs}):
        a, b = pick(proto_a, tool_a, r), pick(proto_b, tool_b, r)
        if a is None or b is None:
            continue
        value = a.rate / b.rate if what == "rate" else (a.cpu / a.bytes) / (b.cpu / b.bytes)
        out.append(round(value, 3))
    return out
