"""Repair: `verify --repair` marks bad files for refetch and the next crawl fetches them; an export never
ships an image whose bytes no longer match the manifest (size always, sha256 with --verify)."""

from __future__ import annotations

import tarfile

from conftest import cli, done_records, flags_list, mirrored_hashes, run_crawl

from crawler.simulator import SimConfig, SimThread
from crawler.stops import EXIT_FAILED, EXIT_OK, EXIT_USAGE


def _samples(folder) -> set[str]:
    names: set[str] = set()
    for shard in folder.glob("*.tar"):
        with tarfile.open(shard) as tar:
            names |= {m.name.rsplit(".", 1)[0] for m in tar.getmembers() if m.name.endswith(".json")}
    return names


async def test_export_leaves_out_changed_files(sim_factory, tmp_path):
    async with sim_factory(images=20, seed=21) as sim:
        await run_crawl(tmp_path / "m", sim.api_base, browsing_level=31)
    done = done_records(tmp_path / "m")
    shorter, same_size = done[0], done[1]
    (tmp_path / "m" / shorter["path"]).write_bytes(b"cut")
    path = tmp_path / "m" / same_size["path"]
    path.write_bytes(bytes(len(path.read_bytes())))  # same size, other bytes: only a hash can tell

    plain = cli("export", "--out", str(tmp_path / "m"), "--format", "webdataset", "--to", str(tmp_path / "a"))
    assert plain.returncode == EXIT_OK, plain.stderr
    assert "1 left out: the file no longer matches the manifest" in plain.stdout, plain.stdout
    assert _samples(tmp_path / "a") == {str(r["id"]) for r in done} - {str(shorter["id"])}

    verified = cli("export", "--out", str(tmp_path / "m"), "--format", "webdataset", "--to", str(tmp_path / "b"),
                   "--verify")
    assert verified.returncode == EXIT_OK, verified.stderr
    assert "2 left out" in verified.stdout, verified.stdout
    assert _samples(tmp_path / "b") == {str(r["id"]) for r in done} - {str(shorter["id"]), str(same_size["id"])}

    refused = cli("export", "--out", str(tmp_path / "m"), "--format", "jsonl", "--to", str(tmp_path / "c.jsonl"),
                  "--verify")
    assert refused.returncode == EXIT_USAGE and len(refused.stderr.strip().splitlines()) == 1


def test_verify_repair_marks_bad_files_and_the_next_crawl_fetches_them_again(tmp_path):
    out = tmp_path / "m"
    with SimThread(SimConfig(images=25, seed=22)) as sim:
        assert cli("crawl", "--out", str(out), *flags_list(sim.api_base, browsing_level=31)).returncode == EXIT_OK
        done = {r["id"]: r for r in done_records(out)}
        removed, damaged = sorted(done)[:2]
        (out / done[removed]["path"]).unlink()
        (out / done[damaged]["path"]).write_bytes(b"damaged")
        fetched_before = sim.log.count("cdn", 200)

        checked = cli("verify", "--out", str(out))
        assert checked.returncode == EXIT_FAILED and "marked" not in checked.stdout
        repaired = cli("verify", "--out", str(out), "--repair")
        assert repaired.returncode == EXIT_FAILED, repaired.stderr
        assert "marked 2 image(s) for refetch" in repaired.stdout, repaired.stdout

        again = cli("crawl", "--out", str(out), *flags_list(sim.api_base, browsing_level=31))
        assert again.returncode == EXIT_OK, again.stderr
        assert sim.log.count("cdn", 200) - fetched_before == 2  # those two, and nothing else
    assert cli("verify", "--out", str(out)).returncode == EXIT_OK
    assert mirrored_hashes(out) == {i: r["sha256"] for i, r in done.items()}
