"""Settings as people write them: every flag a TOML key (--no-... and follow's own too), sizes with units, typos.

Through the real command on real files; crawls and follow passes run against the simulator over loopback.
"""

from __future__ import annotations

import json
import re

from conftest import FAST, cli, done_records, flags_list

from crawler.config.settings import OPTIONS
from crawler.simulator import SimConfig, SimThread
from crawler.stops import EXIT_FAILED, EXIT_OK, EXIT_USAGE


def show(tmp_path, text: str) -> dict:
    file = tmp_path / "c.toml"
    file.write_text(text)
    result = cli("config", "show", "--json", "--out", str(tmp_path / "m"), "--config", str(file))
    assert result.returncode == EXIT_OK, result.stderr
    return {k: v["value"] for k, v in json.loads(result.stdout).items()}


def test_every_no_flag_is_a_key_too(tmp_path):
    offs = {o.name: o.off_key for o in OPTIONS if o.kind is bool and o.default}
    assert offs["with_meta"] == "no_meta" and offs["fsync"] == "no_fsync"
    values = show(tmp_path, "".join(f"{key} = true\n" for key in offs.values()))
    assert all(values[name] is False for name in offs), values


def test_a_size_key_takes_units(tmp_path):
    assert show(tmp_path, 'max_bytes = "512M"\ntimeout = "2m"\n')["max_bytes"] == 512 * 2**20
    assert show(tmp_path, 'max-bytes = "1.5GB"\n')["max_bytes"] == 1_500_000_000


def test_an_unknown_key_names_the_closest_one(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text("max_imags = 3\n")
    result = cli("crawl", "--out", str(tmp_path / "m"), "--config", str(file))
    assert result.returncode == EXIT_USAGE
    assert result.stderr.strip() == (f"civitai-mirror: error: config file {file}: unknown key 'max_imags'; "
                                     "did you mean 'max_images'?")


def test_max_bytes_with_a_unit_is_applied_by_the_crawl(tmp_path):
    with SimThread(SimConfig(images=12, seed=5, body_bytes=3000)) as sim:
        small = cli("crawl", "--out", str(tmp_path / "small"), *flags_list(sim.api_base, browsing_level=31),
                    "--max-bytes", "1K")
        large = cli("crawl", "--out", str(tmp_path / "large"), *flags_list(sim.api_base, browsing_level=31),
                    "--max-bytes", "512M")
    assert large.returncode == EXIT_OK, large.stderr
    assert len(done_records(tmp_path / "large")) == 12
    assert small.returncode == EXIT_FAILED and not done_records(tmp_path / "small"), small.stderr


def test_follow_reads_its_own_keys_from_the_file(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text("".join(f'{k} = "{v}"\n' if k == "progress" else f"{k} = {v}\n" for k, v in FAST.items())
                    + 'passes = 2\ninterval = "1s"\nbrowsing_level = 31\ncompact_above = "1G"\n')
    with SimThread(SimConfig(images=20, seed=6)) as sim:
        result = cli("follow", "--out", str(tmp_path / "m"), "--config", str(file), "--api-base", sim.api_base,
                     timeout=60)
    assert result.returncode == EXIT_OK, result.stderr
    assert " pass 2: " in result.stderr and " pass 3: " not in result.stderr, result.stderr  # passes = 2
    assert "next pass at" in result.stderr and re.search(r"\(in [01]s\)", result.stderr), result.stderr  # interval = "1s"
    assert len(done_records(tmp_path / "m")) == 20
