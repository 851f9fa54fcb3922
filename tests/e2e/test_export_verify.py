"""`export --verify` in every format that ships image bytes: a file whose bytes changed but not its size
is shipped without it (only a hash can tell) and left out, and counted, with it.

Through the real command on a mirror crawled from the simulator over loopback.
"""

from __future__ import annotations

import pytest
from conftest import cli, done_records, run_crawl

from crawler import normalise
from crawler.stops import EXIT_OK


def _shipped(fmt: str, to) -> set[str]:
    """The image keys an export holds."""
    import pyarrow.parquet as pq
    if fmt == "hf":
        return {str(k) for k in pq.read_table(to / "data").column("key").to_pylist()}
    if fmt == "parquet":
        return {str(k) for k in pq.read_table(to).column("key").to_pylist()}
    return {p.stem for p in to.iterdir() if p.suffix != ".txt"}  # captions: {key}.{ext} beside {key}.txt


@pytest.mark.parametrize(("fmt", "extra"), [("hf", ()), ("parquet", ("--embed-images",)), ("captions", ())])
async def test_verify_leaves_out_a_file_whose_bytes_changed_but_not_its_size(sim_factory, tmp_path, fmt, extra):
    async with sim_factory(images=20, seed=218) as sim:
        await run_crawl(tmp_path / "m", sim.api_base, browsing_level=31, type="image")
    # One with a prompt: captions leave out an image without one, whatever its bytes.
    tampered = next(r for r in done_records(tmp_path / "m") if normalise.meta_fields(r["item"])["prompt"])
    path = tmp_path / "m" / tampered["path"]
    path.write_bytes(bytes(len(path.read_bytes())))  # same size, other bytes
    suffix = ".parquet" if fmt == "parquet" else ""

    def run(name: str, *flags: str):
        to = tmp_path / f"{name}{suffix}"
        result = cli("export", "--out", str(tmp_path / "m"), "--format", fmt, "--to", str(to), *extra, *flags)
        assert result.returncode == EXIT_OK, result.stderr
        return result.stdout, _shipped(fmt, to)

    plain_out, plain = run("plain")
    verified_out, verified = run("verified", "--verify")
    key = str(tampered["id"])
    assert key in plain and "no longer matches" not in plain_out, plain_out  # the size matches: shipped
    assert verified == plain - {key}, verified_out
    assert "1 left out: the file no longer matches the manifest" in verified_out, verified_out
