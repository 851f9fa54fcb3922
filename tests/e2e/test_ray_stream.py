"""--executor ray streams each image's result back as it finishes: a stalled image holds back no
other image's record (the simulator stalls the body; the manifest is read while it hangs)."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import _NullLog, crawl_config, done_records

from crawler.run.crawl import Crawl
from crawler.simulator import FaultConfig

pytestmark = pytest.mark.timeout(180)


async def test_a_stalled_image_holds_back_no_other_images_record(ray_cluster, sim_factory, tmp_path):
    # Some bodies stop half-way for longer than the test looks; --timeout 30 keeps the crawler waiting on them.
    async with sim_factory(images=80, seed=76, faults=FaultConfig(cdn_stall=0.04, stall_seconds=60)) as sim:
        cfg = crawl_config(tmp_path, sim.api_base, browsing_level=31, executor="ray", ray_address=ray_cluster,
                           download_workers=1, concurrency=8, timeout=30)
        crawl = Crawl(cfg, log=_NullLog())
        run = asyncio.create_task(crawl.run())
        try:
            deadline = time.monotonic() + 90
            while True:  # until a body has hung for 3 s
                assert not run.done() and time.monotonic() < deadline, "no stall happened"
                now = time.monotonic()
                cdn = sim.log.entries("cdn")
                stalled = {e.path.split("/")[2] for e in cdn if e.fault == "stall" and e.t < now - 3}
                if stalled:
                    break
                await asyncio.sleep(0.1)
            # Everything served whole well before now is on record, beside the hung one(s).
            served = {e.path.split("/")[2] for e in cdn if e.status == 200 and e.fault is None and e.t < now - 2}
            recorded: set[str] = set()
            while time.monotonic() < now + 1 and not served <= recorded:
                recorded = {r["uuid"] for r in done_records(tmp_path)}
                await asyncio.sleep(0.1)
            assert len(served) >= 10, f"only {len(served)} image(s) served before the stall: too few to show anything"
            missing = served - recorded
            assert not missing, f"{len(missing)} of {len(served)} image(s) served 2+ s ago are not on record while " \
                                f"{len(stalled)} hang"
        finally:
            crawl.request_stop()
            await asyncio.wait_for(run, 60)
