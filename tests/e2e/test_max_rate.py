"""--max-rate holds the pool's CDN bandwidth: never above it in any second, close to it over a run.

Measured at the simulator: every CDN answer's body size at the time its request arrived (the server
writes a whole body into the socket at once). Allowance in any one second: one body per connection,
which the server sends before the mirror has read and paid for it.
"""

from __future__ import annotations

import pytest
from conftest import _NullLog, cli, crawl_config, done_records, flags_list

from crawler.run.crawl import Crawl
from crawler.simulator import SimConfig, SimThread
from crawler.stops import EXIT_OK

CAP = 2 * 2**20  # --max-rate 2M
CONCURRENCY = 4
BODY = 32 * 1024  # typical; the simulator varies it by up to +-25 %


def _most_bytes_within(sent: list[tuple[float, int]], window: float = 1.0) -> int:
    best = total = start = 0
    for t, size in sent:
        total += size
        while t - sent[start][0] >= window:
            total -= sent[start][1]
            start += 1
        best = max(best, total)
    return best


def _assert_held(sent: list[tuple[float, int]], connections: int, reached: float = 0.9) -> None:
    slack = connections * max(size for _, size in sent)
    peak = _most_bytes_within(sent)
    assert peak <= CAP + slack, f"{peak} bytes within one second; cap {CAP} + {slack} in flight"
    # Over the run: every body but the last arrived within [first, last] arrival.
    span = sent[-1][0] - sent[0][0]
    rate = sum(size for _, size in sent[:-1]) / span
    assert rate >= reached * CAP, f"{rate / CAP:.1%} of the cap over {span:.1f}s"


@pytest.mark.timeout(120)
def test_max_rate_caps_every_second_and_reaches_the_cap(tmp_path):
    with SimThread(SimConfig(images=400, seed=5, body_bytes=BODY)) as sim:
        flags = flags_list(sim.api_base, browsing_level=31, max_rate="2M", concurrency=CONCURRENCY, limit=100)
        result = cli("crawl", "--out", str(tmp_path), *flags, timeout=90)
        sent = sorted((e.t, e.bytes_sent) for e in sim.log.entries("cdn") if e.status == 200)
    assert result.returncode == EXIT_OK, result.stderr[-2000:]
    assert len(done_records(tmp_path)) == 400
    _assert_held(sent, CONCURRENCY)


@pytest.mark.timeout(120)
async def test_ray_actors_share_the_cap(ray_cluster, sim_factory, tmp_path):
    async with sim_factory(images=400, seed=6, body_bytes=BODY) as sim:
        cfg = crawl_config(tmp_path, sim.api_base, browsing_level=31, executor="ray", ray_address=ray_cluster,
                           download_workers=2, concurrency=CONCURRENCY, max_rate="2M")
        outcome = await Crawl(cfg, log=_NullLog()).run()
        sent = sorted((e.t, e.bytes_sent) for e in sim.log.entries("cdn") if e.status == 200)
    assert outcome.exit_code == EXIT_OK and len(done_records(tmp_path)) == 400
    # Each actor holds its half with its own connections; a fixed half cannot borrow what an actor that is
    # still starting or between batches leaves unused, so over a short run Ray reaches less of the cap
    # (88.9 % seen on a loaded 2-core machine): the ceiling is the promise here, 80 % the floor.
    _assert_held(sent, 2 * CONCURRENCY, reached=0.8)
