"""`make run`: start the simulator on 127.0.0.1 and mirror a few thousand images from it.

Shows what a real crawl looks like (live progress, a few injected faults, the status summary) with
no network access; the same command against civitai.com is in the README.
"""

from __future__ import annotations

import argparse
import sys

from crawler.cli import main as cli
from crawler.simulator import FaultConfig, SimConfig, SimThread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crawler.cli.demo", description=__doc__)
    parser.add_argument("--out", default="mirror-demo", metavar="DIR", help="mirror directory (default: mirror-demo)")
    parser.add_argument("--images", type=int, default=3000, metavar="N", help="catalogue size (default: 3000)")
    args = parser.parse_args(argv)
    faults = FaultConfig(api_503=0.02, cdn_500=0.01, cdn_reset=0.005, cdn_truncate=0.005, cdn_429=0.002,
                         duplicate=0.1, retry_after=1.0)
    with SimThread(SimConfig(images=args.images, seed=42, hidden=0.05, gone=0.005, faults=faults)) as sim:
        print(f"simulator listening on {sim.api_base} ({args.images} images, a few faults injected)", flush=True)
        command = ["crawl", "--out", args.out, "--api-base", sim.api_base, "--browsing-level", "31",
                   "--sort", "Newest", "--limit", "200", "--concurrency", "16", "--api-rps", "20",
                   "--cdn-rps", "2000", "--backoff-base", "0.2", "--backoff-max", "2", "--log-interval", "2"]
        print("$ civitai-mirror " + " ".join(command), flush=True)
        code = cli.main(command)
    print(f"\ncrawl exit code {code}; $ civitai-mirror status --out {args.out}", flush=True)
    cli.main(["status", "--out", args.out])
    return code


if __name__ == "__main__":
    sys.exit(main())
