"""What --help and --version tell a new user: a description everywhere, real metavars, only meaningful flags."""

from __future__ import annotations

import argparse
import json
import re
from importlib import metadata

import pytest

from crawler.cli import main as cli_main
from crawler.config.settings import OPTIONS
from crawler.export.dataset import FORMATS
from crawler.stops import EXIT_OK

COMMANDS = (("crawl",), ("plan",), ("follow",), ("compact",), ("config",), ("config", "show"), ("status",),
            ("verify",), ("export",), ("sim",))


def help_of(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli_main.main([*argv, "--help"])
    assert exit_.value.code == EXIT_OK
    return capsys.readouterr().out


def parser_of(*path: str) -> argparse.ArgumentParser:
    parser = cli_main.build_parser()
    for name in path:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def test_version_is_the_installed_distributions(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main.main(["--version"])
    assert exit_.value.code == EXIT_OK
    assert capsys.readouterr().out.strip() == f"civitai-mirror {metadata.version('civitai-mirror')}"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_help_has_a_description(capsys, command):
    assert parser_of(*command).description
    text = help_of(capsys, *command)
    assert text.split("\n\n")[1].strip() and not text.split("\n\n")[1].lstrip().startswith(("options:", "positional"))


def test_top_level_help_lists_every_export_format(capsys):
    text = help_of(capsys)
    export_line = re.search(r"export\s+(.+?)\n\s{4}\w", text, re.S)
    assert export_line and all(fmt in export_line.group(1) for fmt in FORMATS), text


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_no_flag_shows_its_raw_name_as_metavar(capsys, command):
    for action in parser_of(*command)._actions:
        if action.option_strings and action.nargs != 0 and action.help != argparse.SUPPRESS:
            assert action.metavar or action.choices, action.option_strings
    text = help_of(capsys, *command)
    assert set(re.findall(r"\b[A-Z]+_[A-Z_]*\b", text)) <= {"CIVITAI_API_KEY", "AWS_"}, text
    assert not {"PROGRESS", "SOURCE", "EXECUTOR", "PERIOD", "NSFW"} & set(re.findall(r"\b[A-Z]+\b", text))


def test_plan_help_lists_only_what_a_plan_uses_but_takes_every_crawl_flag(capsys):
    text = help_of(capsys, "plan")
    for flag in ("--cdn-rps", "--concurrency", "--no-fsync", "--progress", "--executor", "--max-images"):
        assert flag not in text
    for flag in ("--username", "--since", "--min-width", "--api-base", "--base-model"):
        assert flag in text
    # The same command line plans and crawls.
    args = parser_of("plan").parse_args(["--by", "username", "--to", "p", "--cdn-rps", "9", "--no-fsync",
                                         "--allow-host", "h"])
    assert (args.cdn_rps, args.fsync, args.allow_host) == ("9", False, ["h"])
    assert len([o for o in OPTIONS if f"{o.flag} " in text or f"{o.flag}\n" in text]) < len(OPTIONS)


def test_config_show_shows_out_and_state(tmp_path, capsys):
    assert cli_main.main(["config", "show", "--json", "--out", str(tmp_path / "m")]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["out"] == {"value": str(tmp_path / "m"), "source": "flag"}
    assert data["state"]["value"] == str(tmp_path / "m")
    assert cli_main.main(["config", "show"]) == EXIT_OK
    text = capsys.readouterr().out
    assert re.search(r"^out\s+\.\s+\(default\)$", text, re.M), text
    # As a person types the values, never a Python repr.
    assert "None" not in text and "()" not in text and "'" not in text, text
    assert re.search(r"^max_bytes\s+512M\s", text, re.M) and re.search(r"^fsync\s+true\s", text, re.M), text
