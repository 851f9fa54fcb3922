"""crawler.locations: where images go, as the user wrote it: local path, file:// URL or fsspec URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.locations import is_remote, local_path, parse_storage_options


@pytest.mark.parametrize(("url", "remote"), [
    ("s3://bucket/mirror", True), ("gs://b", True), ("memory://x", True), ("S3://bucket", True),
    ("az+abfs://c/p", True), ("simplecache::s3://bucket/x", True), ("zip::file:///a.zip", True),
    ("/srv/mirror", False), ("mirror", False), ("./s3:/x", False), ("~/mirror", False),
    ("file:///srv/mirror", False), ("file:///srv/a::b", False),
    ("/srv/a::b", False), ("a::b", False), ("FILE:///srv/mirror", False), ("local://srv", False),
    ("C:\\mirror", False), ("3s://x", False),  # a scheme starts with a letter
])
def test_is_remote(url, remote):
    assert is_remote(url) is remote


@pytest.mark.parametrize(("url", "path"), [
    ("/srv/mirror", Path("/srv/mirror")),
    ("rel/dir", Path("rel/dir")),
    ("file:///srv/mirror", Path("/srv/mirror")),
    ("file://localhost/srv/mirror", Path("/srv/mirror")),
    ("file:///srv/my%20mirror", Path("/srv/my mirror")),
    ("File://rel/path", Path("rel/path")),  # fsspec's reading: relative
])
def test_local_path(url, path):
    assert local_path(url) == path


def test_local_path_expands_the_home_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert local_path("~/mirror") == tmp_path / "mirror"
    assert local_path("file://~/mirror") == tmp_path / "mirror"


def test_local_path_refuses_an_object_store():
    with pytest.raises(ValueError, match="not a local path"):
        local_path("s3://bucket/x")


def test_storage_option_values_are_typed():
    got = parse_storage_options([
        "anon=true", "use_ssl=False", "max=10", "neg=-3", "ratio=0.5", "zip=007", "ver=1.2.3",
        'headers={"a": 1}', "list=[1,2]", "name=eu-west-1", "empty=", "eq=a=b",
    ])
    assert got == {"anon": True, "use_ssl": False, "max": 10, "neg": -3, "ratio": 0.5, "zip": "007", "ver": "1.2.3",
                   "headers": {"a": 1}, "list": [1, 2], "name": "eu-west-1", "empty": "", "eq": "a=b"}
    assert type(got["max"]) is int and type(got["ratio"]) is float


def test_dotted_keys_nest_and_merge():
    got = parse_storage_options(["client_kwargs.region_name=x", "client_kwargs.endpoint_url=http://127.0.0.1:9",
                                 " key = v", "a.b.c=1"])
    assert got == {"client_kwargs": {"region_name": "x", "endpoint_url": "http://127.0.0.1:9"}, "key": " v",
                   "a": {"b": {"c": 1}}}
    assert parse_storage_options([]) == {}


@pytest.mark.parametrize("pairs", [["novalue"], ["=x"], ["a..b=1"], [".a=1"], ["a.=1"], ["ok=1", "  =2"]])
def test_malformed_pairs_are_refused_by_position_without_echoing_them(pairs):
    with pytest.raises(ValueError, match=rf"option {len(pairs)} is not KEY=VALUE") as raised:
        parse_storage_options(pairs)
    assert pairs[-1].strip() not in str(raised.value)  # a mistyped option may be a secret


def test_a_key_cannot_be_both_a_value_and_a_table():
    with pytest.raises(ValueError, match=r"^a\.b: a is already set to a value$"):
        parse_storage_options(["a=1", "a.b=2"])


def test_json_looking_values_must_parse():
    with pytest.raises(ValueError, match=r"^a value that starts like JSON does not parse$"):
        parse_storage_options(["headers={not json"])
