"""Ctrl-C during `crawl --dry-run` prints the tally so far (and exits 130), rather than nothing, and saves no
count: a partial tally would give a later crawl a wrong ETA."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from conftest import flags_list

from crawler.simulator import SimConfig, SimThread
from crawler.stops import EXIT_INTERRUPTED


def test_ctrl_c_during_a_dry_run_prints_the_tally_so_far(tmp_path):
    # 2 API pages a second over 40 pages: the walk is still going when the signal comes.
    with SimThread(SimConfig(images=2000, seed=211)) as sim:
        args = [sys.executable, "-m", "crawler", "crawl", "--dry-run", "--out", str(tmp_path / "m"),
                *flags_list(sim.api_base, browsing_level=31, api_rps=2, limit=50)]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while len(sim.log.entries("api")) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err
    assert "dry run:" in out and "matched:" in out
    pages = int(out.split("dry run: ")[1].split(" page")[0])
    assert 2 <= pages < 40  # the pages walked before the signal, not a full walk
    assert "count not saved: the walk stopped early (interrupted)" in out, out
    assert not (tmp_path / "m").exists()  # no count file, so not even the folder
