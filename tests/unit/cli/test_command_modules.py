"""The command line as modules: each command parses, runs and fails through `main`, exit codes from `stops`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crawler.cli import main as cli_main
from crawler.cli.parsing import duration, size
from crawler.config.settings import ConfigError
from crawler.simulator import SimConfig, SimThread
from crawler.stops import EXIT_FAILED, EXIT_OK, EXIT_USAGE

FAST = ["--browsing-level", "31", "--progress", "none", "--api-rps", "1000", "--cdn-rps", "5000", "--limit", "50",
        "--backoff-base", "0.01", "--backoff-max", "0.05", "--timeout", "5"]


def test_every_command_module_offers_add_parser_and_run_and_is_listed(capsys):
    names = {"crawl", "plan", "follow", "compact", "config", "status", "verify", "export", "sim"}
    modules = [cli_main.command_module(name) for name in cli_main.COMMANDS]
    assert all(callable(m.add_parser) and callable(m.run) for m in modules)
    with pytest.raises(SystemExit) as exit_:
        cli_main.main(["--help"])
    text = capsys.readouterr().out
    assert exit_.value.code == EXIT_OK and all(f"    {name} " in text for name in names), text


def test_each_command_runs_on_a_real_mirror(tmp_path, capsys):
    out = tmp_path / "m"
    with SimThread(SimConfig(images=60, seed=7)) as sim:
        assert cli_main.main(["crawl", "--out", str(out), "--api-base", sim.api_base, *FAST]) == EXIT_OK
        assert cli_main.main(["crawl", "--dry-run", "--out", str(out), "--api-base", sim.api_base, *FAST]) == EXIT_OK
        assert cli_main.main(["plan", "--by", "username", "--value", "a", "--value", "b", "--to",
                              str(tmp_path / "plan.json"), "--api-base", sim.api_base, *FAST]) == EXIT_OK
    capsys.readouterr()
    assert cli_main.main(["status", "--out", str(out), "--json"]) == EXIT_OK
    status = json.loads(capsys.readouterr().out)
    assert status["last_run"]["reason"] == "feed-ended" and status["done"] > 0
    assert cli_main.main(["verify", "--out", str(out)]) == EXIT_OK
    assert "0 problem(s)" in capsys.readouterr().out
    assert cli_main.main(["export", "--out", str(out), "--format", "jsonl", "--to", str(tmp_path / "d.jsonl")]) == EXIT_OK
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == status["done"]
    assert cli_main.main(["compact", "--out", str(out)]) == EXIT_OK
    assert (out / "manifest.jsonl.prev").exists()
    assert cli_main.main(["config", "show", "--json", "--out", str(out), "--concurrency", "3"]) == EXIT_OK
    shown = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert shown["concurrency"] == {"value": 3, "source": "flag"} and shown["limit"]["source"] == "default"
    (out / images_file(out)).write_bytes(b"changed")
    assert cli_main.main(["verify", "--out", str(out)]) == EXIT_FAILED


def images_file(out: Path) -> Path:
    return next(p for p in (out / "images").rglob("*") if p.is_file()).relative_to(out)


@pytest.mark.parametrize("argv, message", [
    (["status", "--out", "{tmp}"], "has no manifest.jsonl"),
    (["verify", "--out", "{tmp}"], "has no manifest.jsonl"),
    (["export", "--out", "{tmp}", "--format", "jsonl", "--to", "{tmp}/x"], "has no manifest.jsonl"),
    (["compact", "--out", "{tmp}"], "has no manifest.jsonl"),
    (["status", "--out", "{tmp}", "--max-age", "soon"], "--max-age: 'soon' is not a duration"),
    (["follow", "--out", "{tmp}", "--sort", "Oldest"], "follow walks the feed newest first"),
    (["follow", "--out", "{tmp}", "--compact-above", "big"], "--compact-above: 'big' is not a size"),
    (["plan", "--by", "username", "--to", "{tmp}/p.json", "--overlap", "x"], "--overlap: 'x' is not a duration"),
    (["config", "show", "--limit", "0"], "--limit: must be at least 1"),
    (["crawl", "--out", "s3://bucket/p"], "give --state DIR"),
])
def test_a_command_usage_error_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    code = cli_main.main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and len(err.strip().splitlines()) == 1 and message in err, err


def test_a_bad_flag_exits_2_from_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main.main(["verify"])
    assert exit_.value.code == EXIT_USAGE and "--out" in capsys.readouterr().err


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("1.5d", 129600)])
def test_durations(text, seconds):
    assert duration(text, "--interval") == seconds


@pytest.mark.parametrize("text, size_", [("500", 500), ("1kb", 1000), ("256MB", 256_000_000), ("2gb", 2_000_000_000)])
def test_sizes(text, size_):
    assert size(text, "--compact-above") == size_


@pytest.mark.parametrize("text", ["", "0", "-5m", "10x", "nan", "m"])
def test_bad_durations_are_a_config_error(text):
    with pytest.raises(ConfigError, match="--interval"):
        duration(text, "--interval")
