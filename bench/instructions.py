"""Group `instructions`: user-space instructions per image of our crawl and of the bare loop, counted by
valgrind (callgrind) -- the CPU comparison without this VM's noise (repeat runs agree within 0.1 %,
where CPU seconds of the same run vary by 10-20 %).

Per image = (the count of a 2,000-image run - that of a 1,000-image run) / 1,000, so start-up drops out;
start-up is shown apart (a 1,000-image run minus 1,000 images' worth). Counted per shared object, so the
interpreter's work (libpython, with the code inlined from its headers), libc's, the C extensions' and
OpenSSL's are told apart. libcrypto is shown apart and left out of the
ratio: under valgrind OpenSSL hashes without the CPU's SHA extensions (~28 instructions a byte), so its
count is not what the hardware does (natively SHA-256 costs ~0.76 ms per MB here; the `large` group).
Kernel time (system calls) is not counted at all: the ceiling group's sys seconds cover it.

Needs valgrind: installed with apt-get like aria2c when missing and allowed, else the group is skipped.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH,
    CEILING_BODY,
    CONCURRENCY,
    PY,
    UNTHROTTLED,
    Report,
    crawl_cmd,
    ensure_tool,
    fresh_dir,
    list_urls,
    manifest_summary,
    per_image,
    tree_stats,
)
from bench.procs import Child, SimProcess

SIZES = (1_000, 2_000)
CRYPTO = "libcrypto"
# callgrind names no object for code inlined from headers; the header's path says whose it is: the
# interpreter's build tree (its static inline functions: frames, refcounts, dict lookups), glibc's ("./"),
# or a C extension's -- the Python headers it was built against, or its own sources (manylinux wheels).
_INLINED = {"/Python-3.": "libpython3.11", " ./": "libc", "/include/python3": "C extensions, inlined",
            "/project/": "C extensions, inlined"}


def objects(callgrind_out: Path) -> dict[str, float]:
    """Instructions per shared object (basename, without its version suffix) of one callgrind profile."""
    text = subprocess.run(["callgrind_annotate", "--threshold=100", str(callgrind_out)], capture_output=True,
                          text=True, timeout=600, check=True).stdout
    found: dict[str, float] = {}
    for line in text.splitlines():
        head = line.strip().split(" ", 1)
        if len(head) < 2 or "PROGRAM TOTALS" in line or not head[0].replace(",", "").isdigit():
            continue
        count = int(head[0].replace(",", ""))
        if line.endswith("]"):
            obj = line.rsplit("[", 1)[1].rstrip("]").rsplit("/", 1)[-1].split(".cpython")[0].split(".so")[0]
        else:  # no object named: code inlined from a header file, told apart by where the header is
            obj = _INLINED.get(next((k for k in _INLINED if k in f" {head[1].lstrip()}"), ""), "???")
        found[obj] = found.get(obj, 0) + count
    return found


def counted(name: str, cmds: dict[int, list[str]], work: Path, timeout: float) -> dict[int, dict[str, float]]:
    """Run each size's command under callgrind, side by side; the instructions per object of each."""
    children = {}
    for n, cmd in cmds.items():
        out = work / f"{name}-{n}.callgrind"
        children[n] = (out, Child(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
                                  work / "logs" / f"instr-{name}-{n}.log", timeout))
    result = {}
    for n, (out, child) in children.items():
        ran = child.wait()
        if ran.rc != 0 or ran.timed_out:
            raise RuntimeError(f"{name} {n} under valgrind: rc {ran.rc}, timed out {ran.timed_out}: {ran.log_tail[-300:]!r}")
        result[n] = objects(out)
        out.unlink()
    return result


def instructions(args: argparse.Namespace, report: Report, work: Path) -> dict[str, Any]:
    report.print(f"\n11. Instructions per image (valgrind callgrind; {SIZES[1]} minus {SIZES[0]} images of "
                 f"~{CEILING_BODY // 1024} KB, concurrency {CONCURRENCY}; user space only)")
    tool = ensure_tool("valgrind", "valgrind", not args.no_install, report, "instructions group skipped")
    if not tool.get("path"):
        return {"skipped": tool["note"]}
    logs = work / "logs"
    with SimProcess(["--images", str(SIZES[1]), "--body-bytes", str(CEILING_BODY), "--prewarm"],
                    logs / "sim-instructions.log") as sim:
        urls = list_urls(sim.api_base)[:SIZES[1]]
        url_files = {}
        for n in SIZES:
            url_files[n] = work / f"urls-{n}.txt"
            url_files[n].write_text("\n".join(urls[:n]) + "\n")
        outs = {("ours", n): fresh_dir(work / f"instr-ours-{n}") for n in SIZES}
        outs.update({(tool, n): fresh_dir(work / f"instr-{tool}-{n}") for tool in ("bare", "raw") for n in SIZES})
        ours = counted("ours", {n: crawl_cmd(outs["ours", n], sim.api_base, "--concurrency", str(CONCURRENCY),
                                             *UNTHROTTLED, "--max-images", str(n)) for n in SIZES}, work, 1800)
        bare = counted("bare", {n: [PY, str(BENCH / "bare.py"), str(url_files[n]), str(outs["bare", n]), str(CONCURRENCY)]
                                for n in SIZES}, work, 1800)
        # A minimal HTTP/1.1 loop without aiohttp (bench/raw.py): its gap to the bare loop is the library's share.
        raw = counted("raw", {n: [PY, str(BENCH / "raw.py"), str(url_files[n]), str(outs["raw", n]), str(CONCURRENCY)]
                              for n in SIZES}, work, 1800)
    for n in SIZES:  # a count is only worth something for a run that fetched every image
        done = len(manifest_summary(outs["ours", n] / "manifest.jsonl")["done_urls"])
        files = {tool: tree_stats(outs[tool, n])[0] for tool in ("bare", "raw")}
        if done != n or set(files.values()) != {n}:
            raise RuntimeError(f"incomplete run under valgrind: ours {done}/{n} done, files {files} of {n}")
    ours_img, bare_img, raw_img = per_image(ours), per_image(bare), per_image(raw)
    names = sorted(set(ours_img) | set(bare_img) | set(raw_img),
                   key=lambda o: -max(ours_img.get(o, 0), bare_img.get(o, 0)))
    report.print(f"   {'object':28s} {'ours/image':>11s} {'bare/image':>11s} {'raw/image':>11s}")
    for o in names:
        a, b, c = ours_img.get(o, 0), bare_img.get(o, 0), raw_img.get(o, 0)
        if max(a, b, c) >= 1_000:
            left_out = "   (left out: see above)" if o.startswith(CRYPTO) else ""
            report.print(f"   {o:28s} {a / 1e3:9.0f} K {b / 1e3:9.0f} K {c / 1e3:9.0f} K{left_out}")
    totals = {name: sum(v for o, v in img.items() if not o.startswith(CRYPTO))
              for name, img in (("ours", ours_img), ("bare", bare_img), ("raw", raw_img))}
    ours_total, bare_total = totals["ours"], totals["bare"]
    start = {name: (sum(c[SIZES[0]].values()) - SIZES[0] * sum(img.values())) / 1e6
             for name, c, img in (("ours", ours, ours_img), ("bare", bare, bare_img), ("raw", raw, raw_img))}
    ratio = ours_total / bare_total if bare_total else None
    report.print(f"   {'all but libcrypto':28s} {ours_total / 1e3:9.0f} K {bare_total / 1e3:9.0f} K "
                 f"{totals['raw'] / 1e3:9.0f} K   ours/bare {ratio:.2f}" if ratio else "")
    report.print(f"   start-up (all objects): ours {start['ours']:.0f} M, bare {start['bare']:.0f} M, "
                 f"raw {start['raw']:.0f} M instructions")
    report.print("   (raw: bench/raw.py, a minimal HTTP/1.1 loop without aiohttp, not a usable client: bare - raw is the "
                 "HTTP library's share of the bare loop)")
    return {"per_image": {"ours": ours_img, "bare": bare_img, "raw": raw_img},
            "per_image_without_crypto": totals, "ratio_without_crypto": ratio,
            "startup_minstr": start, "valgrind": tool.get("version")}
