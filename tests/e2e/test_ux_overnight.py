"""What an overnight mirror needs: a log file, progress with elapsed time and ETA, follow saying what comes next.

Through the real command against the simulator over loopback, on real files.
"""

from __future__ import annotations

import json
import re

from conftest import cli, flags_list

from crawler.simulator import SimConfig, SimThread
from crawler.stops import EXIT_OK


def test_follow_says_when_the_next_pass_starts_and_never_cites_a_since_not_given(tmp_path):
    with SimThread(SimConfig(images=30, seed=8)) as sim:
        result = cli("follow", "--out", str(tmp_path / "m"), *flags_list(sim.api_base, browsing_level=31),
                     "--passes", "3", "--interval", "1s")
    assert result.returncode == EXIT_OK, result.stderr
    lines = result.stderr.splitlines()
    passes = [n for n, text in enumerate(lines) if re.search(r" pass \d: ", text)]
    assert len(passes) == 3, result.stderr
    for n in passes[:-1]:
        assert re.search(r"next pass at \d\d:\d\d:\d\d \(in 0m0[01]s\)", lines[n + 1]), result.stderr
    assert "--since" not in result.stderr
    assert "what earlier passes mirrored" in lines[passes[1]], result.stderr
