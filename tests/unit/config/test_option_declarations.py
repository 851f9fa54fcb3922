"""Options are declared once, as `CrawlConfig` fields: flags, TOML keys, defaults and help all derive from them."""

from __future__ import annotations

import argparse
import dataclasses
import os
import ssl
from pathlib import Path
from typing import Any

import pytest

from crawler.cli import plan
from crawler.cli.main import build_parser, main
from crawler.config.settings import OPTIONS, ConfigError, CrawlConfig, Option, build, given

NOT_OPTIONS = {"out", "state", "api_key"}  # where and who, not how: never a flag or a TOML key
# Options that are only valid beside another setting (the cross-option checks).
COMPANIONS: dict[str, dict[str, Any]] = {"query": {"source": "models"}, "tag": {"source": "models"},
                                         "types": {"source": "models"}, "ray_address": {"executor": "ray"},
                                         "backoff_base": {"backoff_max": 600.0}}
OPTION_COMMANDS = (("crawl",), ("plan",), ("follow",), ("config", "show"))


def sample(o: Option) -> Any:
    """A valid value for `o` that is not its default."""
    if o.kind is bool:
        return not o.default
    if o.kind is list:
        return {"storage_option": ("x=1",), "tag_id": ("12",)}.get(o.name, ("x",))
    if o.choices:
        return next(c for c in o.choices if c != o.default)
    if o.name in ("since", "until"):
        return "2025-01-31"
    if o.name == "api_base":
        return "http://127.0.0.1:9/api/v1"
    if o.name == "ca_file":  # must be an existing PEM file: the system's bundle
        paths = ssl.get_default_verify_paths()
        return next(p for p in (paths.cafile, paths.openssl_cafile) if p and os.path.exists(p))
    if o.kind is str:
        return "someone"
    if o.maximum is not None:
        return o.kind(o.maximum)
    return o.kind((o.minimum or 0) + 3)


def toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return f'"{value}"' if isinstance(value, str) else repr(value)


def argv_for(o: Option, value: Any) -> list[str]:
    if o.kind is bool:
        on, off = o.bool_flags
        return [on if value else off]
    if o.kind is list:
        return [arg for v in value for arg in (o.flag, v)]
    return [o.flag, str(value)]


def subparser(*path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def where(o: Option, tmp_path: Path) -> tuple[str, Path | None]:
    """--out and --state for `o`: an object store URL for storage options, else a local directory."""
    return ("s3://bucket/prefix", tmp_path / "state") if o.name == "storage_option" else (str(tmp_path / "m"), None)


def test_every_config_field_but_out_state_and_key_is_an_option_with_its_default():
    fields = {f.name: f for f in dataclasses.fields(CrawlConfig)}
    assert {o.name for o in OPTIONS} == set(fields) - NOT_OPTIONS
    for o in OPTIONS:
        assert fields[o.name].default == o.default, o.name


def test_every_option_has_help_and_a_toml_key_that_is_its_flag_without_dashes():
    for o in OPTIONS:
        assert o.help.strip(), o.name
        assert o.flag == "--" + o.name.replace("_", "-")
        assert o.toml_key == o.flag.removeprefix("--").replace("-", "_") == o.name


@pytest.mark.parametrize("command", OPTION_COMMANDS, ids=" ".join)
def test_every_option_is_a_flag_of_each_command_that_takes_settings(command):
    actions = {s: a for a in subparser(*command)._actions for s in a.option_strings}
    for o in OPTIONS:
        for flag in (o.bool_flags if o.kind is bool else (o.flag,)):
            assert flag in actions and actions[flag].dest == o.name, flag
            assert actions[flag].default is None, f"{flag} would override the config file"
        if command == ("plan",) and not plan.meaningful(o):
            continue  # accepted, not listed: see test_help_texts
        shown = [actions[f].help for f in (o.bool_flags if o.kind is bool else (o.flag,))]
        assert any(h and h != argparse.SUPPRESS and (o.help in h or (o.off_help or "") in h) for h in shown), o.name


@pytest.mark.parametrize("o", OPTIONS, ids=lambda o: o.name)
def test_a_toml_key_and_its_flag_give_the_same_config(tmp_path, o):
    value, companions = sample(o), COMPANIONS.get(o.name, {})
    out, state = where(o, tmp_path)
    file = tmp_path / "c.toml"
    file.write_text("".join(f"{k} = {toml_literal(v)}\n" for k, v in {**companions, o.toml_key: value}.items()))
    from_file = build(out, {}, file, {}, state=state)
    argv = [arg for k, v in companions.items() for arg in (f"--{k.replace('_', '-')}", str(v))] + argv_for(o, value)
    args = subparser("crawl").parse_args(["--out", out, *argv])
    from_flags = build(args.out, given(args), None, {}, state=state)
    assert getattr(from_file, o.name) == value
    assert from_file == from_flags


def bad_value(o: Option) -> str | None:
    if o.kind is int:
        return "many"
    if o.kind is float:
        return "fast"
    if o.choices:
        return "nope"
    return None  # free strings, lists and switches have no bad spelling on the command line


@pytest.mark.parametrize("o", [o for o in OPTIONS if bad_value(o) is not None], ids=lambda o: o.name)
def test_a_bad_value_is_one_clean_line_naming_the_flag_and_exit_2(tmp_path, capsys, o):
    code = main(["crawl", "--out", str(tmp_path / "m"), o.flag, bad_value(o)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith(f"civitai-mirror: error: {o.flag}: ")
    assert not (tmp_path / "m").exists(), "nothing is written before the settings are valid"


@pytest.mark.parametrize("o", [o for o in OPTIONS if bad_value(o) is not None], ids=lambda o: o.name)
def test_a_bad_toml_value_names_the_file_and_key(tmp_path, o):
    file = tmp_path / "c.toml"
    file.write_text(f'{o.toml_key} = "{bad_value(o)}"\n')
    with pytest.raises(ConfigError, match=f"config file {file}: key '{o.toml_key}': "):
        build(tmp_path / "m", {}, file, {})


def test_switches_keep_their_spelled_flags():
    flags = {o.name: o.bool_flags for o in OPTIONS if o.kind is bool}
    assert {name: flags[name] for name in ("with_meta", "require_meta", "original", "fsync")} == {
        "with_meta": ("--with-meta", "--no-meta"), "require_meta": ("--require-meta", "--no-require-meta"),
        "original": ("--original", "--no-original"), "fsync": ("--fsync", "--no-fsync")}
    assert all(off == "--no-" + on.removeprefix("--") or name == "with_meta" for name, (on, off) in flags.items())
