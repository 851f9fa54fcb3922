"""The benchmark: how fast, how lean and how polite the crawler is next to its ceilings, on this machine.

    .venv/bin/python bench/bench.py [--quick] [--workdir DIR] [--results FILE] [--only GROUP,...]
    make bench                    # full: 15-20 minutes on 2 cores (most of it the 200k crawl and the 10M resume)
    make bench-quick              # or make bench QUICK=1: smaller sizes, ~4 minutes

Groups (each prints its part of the table; everything also goes to bench/results.json):
  ceiling  the same 5,000 simulator URLs (~50 KB) at the same concurrency into a fresh folder:
           aria2c (defaults; and --auto-save-interval=0 --file-allocation=none), a bare aiohttp loop
           writing and discarding (bench/bare.py), a minimal HTTP/1.1 loop without aiohttp writing
           (bench/raw.py: the HTTP library's share), the writing bare loop again followed by a timed `sync -f`
           of its output (durable at its end, as the crawl is all along; no target), and our full
           crawl (API pages, hashing, manifest, group commit), in interleaved rounds (full: 2, best of
           each; quick: 1); full mode also runs `--no-fsync` and one crawl under cProfile
           (crawl_profile.py)
  latency  the simulator adds 50 ms to every response; images/s at concurrency 8 / 32 / 128 / 256
           (target at 128 and 256: ours >= 0.9 x the bare loop's transfer rate)
  cpu      client user+sys CPU per 1,000 images (from the ceiling runs; target <= 1.15 x the bare
           loop's that writes files)
  tls      the ceiling comparison over HTTPS (the simulator's test CA): images/s, CPU per image and per
           MB, TLS handshakes per 1,000 images (connection reuse)
  large    the same at 2 MB per image over HTTP and HTTPS: MB/s and CPU per MB against the bare loop
  rate     --cdn-rps 200 --api-rps 2: achieved rates at the simulator and the busiest 1 s window, from
           a CDN-bound and an API-bound crawl run side by side
  memory   peak RSS crawling 10k vs 200k (quick: 50k) tiny images (onto tmpfs when there is room)
  resume   time from start to the first new download over a generated manifest of 1M and 10M
           (quick: 1M) done records, then again on a restart (which may use a resume snapshot); the
           fold alone without a snapshot, projected to 10M (target < 10 s)
  ray      the same 5,000 (quick: 2,000) ~50 KB images with --executor local, and --executor ray with 1
           and 2 actors on one local Ray head (`ray start --head --block`, 2 CPUs, 127.0.0.1, started once
           for the group, its own token), interleaved (full: 2 rounds, best of each): wall, images/s and
           CPU per image of driver + actors (target: ray < 1.15 x local), the head's daemons apart; CPU
           split into start-up / transfer / exit; no Ray process outlives the group
  serve    `serve`'s index over 1M (quick: 100k) generated records: first build records/s, first gallery
           page, page 100, a common-word search, catch-up of 10k appended records
  export   peak RSS of export --format hf, parquet --embed-images and webdataset over a generated mirror
           of 100k (quick: 10k) done records with ~3.7 KB JPEGs, against 10k (quick: 1k); target:
           < 400 MB and <= 1.5x the small peak
  instructions  user-space instructions per image of our crawl, the bare loop and bench/raw.py under valgrind's
           callgrind (2,000 minus 1,000 images), per shared object: the CPU comparison without noise
  bytecodes  the Python bytecodes each runs per image (sys.settrace, bench/trace_ops.py; 1,000 minus
           500 images), by whose code: each of our stages, aiohttp, yarl, asyncio, aiolimiter

Layout: bench/run.py (flags, the group loop, the targets), one module per group (ceiling.py with
cpu, latency.py, tls_group.py (tls, large), rate.py, memory.py, resume.py, ray_group.py over ray_procs.py, serve_group.py,
export_group.py, instructions.py, bytecodes.py), common.py (paths,
command lines, the report, machine facts) and procs.py (child processes, the simulator process);
bare.py, simserve.py, trace_ops.py and manifest_gen.py are the helpers the groups run.

The simulator runs in its own process (bench/simserve.py, bodies pre-generated) with its CPU time
measured per run (`rate` runs two, and reads their arrival times with simserve's `times` command),
except for `resume`, which needs its request log and runs it in this process
(crawler.simulator.SimThread). Every child has a timeout. The bench
reports (PASS/MISS next to each target); it asserts nothing. Only 127.0.0.1 is contacted (apt-get
aside, when aria2c is missing and we are root; `ray` lists any socket of the Ray processes and
drivers that is not on loopback). Temporary data lives in bench/.bench-* (or --workdir),
/dev/shm/civitai-bench-* and /tmp/civitai-bench-ray-* (the Ray session), removed at the end; it
peaks at ~4 GB (the 10M manifest).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script (`python bench/bench.py`): the checkout's root makes `bench` and `crawler` importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import main

if __name__ == "__main__":
    sys.exit(main())
