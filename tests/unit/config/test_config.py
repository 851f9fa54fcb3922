"""Settings: defaults < TOML file < flags, validation with one readable error naming the problem."""

from pathlib import Path

import pytest

from crawler.config import settings as config
from crawler.config.settings import ConfigError


def build(tmp_path, cli=None, text=None, env=None):
    file = None
    if text is not None:
        file = tmp_path / "c.toml"
        file.write_text(text)
    return config.build(tmp_path / "out", cli or {}, file, env or {})


def test_flags_win_over_file_and_file_over_defaults(tmp_path):
    cfg = build(tmp_path, {"concurrency": "4"}, 'concurrency = 8\napi_rps = 0.5\nbase_model = ["SDXL 1.0"]\n')
    assert cfg.concurrency == 4 and cfg.api_rps == 0.5 and cfg.base_model == ("SDXL 1.0",)
    assert build(tmp_path).concurrency == 16


def test_unknown_toml_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'concurency'"):
        build(tmp_path, text="concurency = 3\n")


def test_malformed_toml_is_one_error(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        build(tmp_path, text="concurrency = = 3\n")


def test_toml_wrong_type_is_named(tmp_path):
    with pytest.raises(ConfigError, match="key 'limit': expected an integer"):
        build(tmp_path, text='limit = "many"\n')


@pytest.mark.parametrize("cli, match", [
    ({"limit": "0"}, "at least 1"), ({"limit": "201"}, "at most 200"), ({"width": "-5"}, "at least 1"),
    ({"width": "abc"}, "expected an integer"), ({"width": "100", "original": True}, "contradict"),
    ({"api_base": "ftp://x"}, "http"), ({"sort": "Best"}, "not one of"), ({"api_rps": "fast"}, "expected a number"),
])
def test_bad_values_are_rejected(tmp_path, cli, match):
    with pytest.raises(ConfigError, match=match):
        build(tmp_path, cli)


def test_api_key_comes_from_env_and_is_not_in_repr_or_description(tmp_path):
    cfg = build(tmp_path, env={"CIVITAI_API_KEY": "sekrit-key"})
    assert cfg.api_key == "sekrit-key"
    assert "sekrit" not in repr(cfg) and "sekrit" not in str(config.describe(cfg))


def test_query_identity_ignores_how_but_not_what(tmp_path):
    a = build(tmp_path, {"sort": "Newest", "concurrency": "2", "limit": "50"})
    b = build(tmp_path, {"sort": "Newest", "concurrency": "9"})
    c = build(tmp_path, {"sort": "Oldest"})
    assert a.query_identity() == b.query_identity() != c.query_identity()


def test_shipped_configs_load(tmp_path):
    root = Path(__file__).resolve().parents[3] / "config"
    files = sorted(root.glob("*.toml"))
    assert {"default.toml", "overnight.toml"} <= {f.name for f in files}
    for f in files:
        config.build(tmp_path / "out", {}, f, {})


def test_storage_option_values_are_never_described_and_state_is_required_for_a_url(tmp_path):
    cfg = config.build("s3://bucket/prefix", {"storage_option": ["key=AKIASECRET", "client_kwargs.region_name=x"]},
                       state=tmp_path / "state")
    assert cfg.remote and cfg.state == tmp_path / "state"
    assert cfg.storage_options() == {"key": "AKIASECRET", "client_kwargs": {"region_name": "x"}}
    described = config.describe(cfg)
    assert "AKIASECRET" not in repr(described) and described["storage_option"] == ["key=...", "client_kwargs.region_name=..."]
    with pytest.raises(config.ConfigError, match="give --state DIR"):
        config.build("s3://bucket/prefix", {})
    local = config.build(tmp_path / "m", {})
    assert not local.remote and local.state == tmp_path / "m" and local.out == str(tmp_path / "m")
    with pytest.raises(config.ConfigError, match="--ray-address only applies with --executor ray"):
        config.build(tmp_path / "m", {"ray_address": "auto"})
