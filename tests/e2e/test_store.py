"""RemoteStore against moto's S3 server over sockets: nothing at a final key before commit, kill -9 included.

The store finds the endpoint only through AWS_ENDPOINT_URL(_S3) in the environment, as in production.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from crawler.locations import is_remote, local_path, parse_storage_options
from crawler.store.errors import StoreError
from crawler.store.remote import MIN_PART_SIZE, RemoteStore

if TYPE_CHECKING:
    from s3_fixture import S3Server  # imported by pytest_plugins, so that pytest rewrites its asserts

pytest_plugins = ["s3_fixture"]  # the s3_server, s3_env and s3_bucket fixtures

# An unclosed aiohttp session (a store not closed) warns at garbage collection: make that a failure.
pytestmark = pytest.mark.filterwarnings("error::ResourceWarning", "error::pytest.PytestUnraisableExceptionWarning")

PART = MIN_PART_SIZE + 1024  # small parts keep the multipart tests fast
KEY = "images/000/012/12345.jpeg"


async def opened(url: str) -> RemoteStore:
    store = RemoteStore(url, {}, part_size=PART)
    await store.open()
    return store


def body(size: int) -> bytes:
    return os.urandom(size)


def chunks(data: bytes, size: int = 256 * 1024) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


async def test_small_object_appears_only_on_commit(s3_env: S3Server, s3_bucket: str) -> None:
    store = await opened(f"s3://{s3_bucket}/mirror/")
    assert store.url == f"s3://{s3_bucket}/mirror"
    try:
        data = body(300_000)
        sink = store.sink(KEY, "image/jpeg")
        for chunk in chunks(data):
            await sink.write(chunk)
        assert s3_env.list_keys(s3_bucket) == [] and await store.list() == []
        assert s3_env.list_uploads(s3_bucket) == []  # a body under part_size never starts an upload
        await sink.commit()
        assert s3_env.list_keys(s3_bucket) == [f"mirror/{KEY}"]
        assert s3_env.get(s3_bucket, f"mirror/{KEY}") == data
        head = s3_env.client.head_object(Bucket=s3_bucket, Key=f"mirror/{KEY}")
        assert head["ContentType"] == "image/jpeg"
        assert await store.list() == [KEY] and await store.list("images/000") == [KEY]
        assert await store.list("other") == []
        assert await store.stat(KEY) == len(data)
        assert await store.digest(KEY) == (hashlib.sha256(data).hexdigest(), len(data))
        assert await store.read(KEY) == data
        await sink.abort()  # after a commit: harmless, the object stays
        assert s3_env.get(s3_bucket, f"mirror/{KEY}") == data
    finally:
        await store.close()


async def test_large_object_is_a_multipart_upload_completed_only_by_commit(s3_env: S3Server, s3_bucket: str) -> None:
    store = await opened(f"s3://{s3_bucket}/m")
    try:
        data = body(12 * 2**20)
        sink = store.sink(KEY, "image/png")
        for chunk in chunks(data, 1 << 20):
            await sink.write(chunk)
            assert sink.bytes_buffered <= PART
        assert s3_env.list_keys(s3_bucket) == []
        assert [u["Key"] for u in s3_env.list_uploads(s3_bucket)] == [f"m/{KEY}"]
        await sink.commit()
        assert s3_env.list_uploads(s3_bucket) == []
        assert s3_env.get(s3_bucket, f"m/{KEY}") == data
        assert await store.digest(KEY) == (hashlib.sha256(data).hexdigest(), len(data))

        other = "images/000/012/12346.png"
        sink = store.sink(other, "image/png")
        for chunk in chunks(data, 1 << 20):
            await sink.write(chunk)
        assert len(s3_env.list_uploads(s3_bucket)) == 1
        await sink.abort()
        await sink.abort()  # twice: harmless
        assert s3_env.list_keys(s3_bucket) == [f"m/{KEY}"]
        assert s3_env.list_uploads(s3_bucket) == []
        assert await store.stat(other) is None
    finally:
        await store.close()


async def test_killed_upload_is_aborted_by_clear_leftovers(s3_env: S3Server, s3_bucket: str) -> None:
    # An upload outside the store's prefix is someone else's: it must survive.
    foreign = s3_env.client.create_multipart_upload(Bucket=s3_bucket, Key="elsewhere/x")["UploadId"]
    store = await opened(f"s3://{s3_bucket}/run")
    sink = store.sink(KEY, "image/jpeg")
    for chunk in chunks(body(PART + 100_000)):
        await sink.write(chunk)
    del sink  # kill -9: neither commit nor abort
    await store.close()
    assert s3_env.list_keys(s3_bucket) == []
    assert len(s3_env.list_uploads(s3_bucket)) == 2

    store = await opened(f"s3://{s3_bucket}/run")
    try:
        assert await store.clear_leftovers() == 1
        assert await store.clear_leftovers() == 0
    finally:
        await store.close()
    assert s3_env.list_keys(s3_bucket) == []
    assert [u["UploadId"] for u in s3_env.list_uploads(s3_bucket)] == [foreign]


async def test_missing_bucket_is_one_readable_line(s3_env: S3Server) -> None:
    store = RemoteStore("s3://no-such-bucket-here/prefix", {})
    with pytest.raises(StoreError) as caught:
        await store.open()
    message = str(caught.value)
    assert "\n" not in message
    assert message == "s3://no-such-bucket-here: the bucket does not exist (or these credentials cannot see it)"


async def test_missing_object(s3_env: S3Server, s3_bucket: str) -> None:
    store = await opened(f"s3://{s3_bucket}")
    try:
        assert await store.digest("images/nope.jpeg") is None
        assert await store.stat("images/nope.jpeg") is None
        with pytest.raises(FileNotFoundError):
            await store.read("images/nope.jpeg")
        sink = store.sink("top.jpeg", "image/jpeg")  # a store at the bucket root: keys have no prefix
        await sink.write(b"x")
        await sink.commit()
        assert s3_env.list_keys(s3_bucket) == ["top.jpeg"]
        assert await store.list() == ["top.jpeg"]
    finally:
        await store.close()


async def test_memory_backend_round_trip() -> None:
    url = f"memory://store-test-{os.getpid()}/mirror"
    store = RemoteStore(url, {})
    await store.open()
    try:
        data = body(100_000)
        sink = store.sink(KEY, "image/jpeg")
        for chunk in chunks(data, 10_000):
            await sink.write(chunk)
        assert await store.list() == [] and await store.stat(KEY) is None
        await sink.commit()
        assert await store.list() == [KEY]
        assert await store.read(KEY) == data
        assert await store.digest(KEY) == (hashlib.sha256(data).hexdigest(), len(data))
        aborted = store.sink("images/gone.jpeg", "image/jpeg")
        await aborted.write(b"partial")
        await aborted.abort()
        assert await store.list() == [KEY]
        assert await store.clear_leftovers() == 0
        assert await store.digest("images/gone.jpeg") is None
        with pytest.raises(FileNotFoundError):
            await store.read("images/gone.jpeg")
    finally:
        await store.close()


def test_storage_options() -> None:
    assert parse_storage_options([]) == {}
    assert parse_storage_options([
        "anon=false", "use_ssl=TRUE", "max_concurrency=4", "key=AKIA123", "neg=-3",
        "client_kwargs.region_name=eu-west-1", "client_kwargs.verify=false",
        'config_kwargs={"retries": {"max_attempts": 3}}', "tags=[1, 2]", "url=http://h:9000/?a=b",
    ]) == {
        "anon": False, "use_ssl": True, "max_concurrency": 4, "key": "AKIA123", "neg": -3,
        "client_kwargs": {"region_name": "eu-west-1", "verify": False},
        "config_kwargs": {"retries": {"max_attempts": 3}}, "tags": [1, 2], "url": "http://h:9000/?a=b",
    }
    assert parse_storage_options(["empty="]) == {"empty": ""}
    for bad in (["anon"], ["a=1", "=x"], ["a..b=1"], ["a=1", "a.b=2"], ["j={bad"]):
        with pytest.raises(ValueError) as caught:
            parse_storage_options(bad)
        assert str(caught.value) and "\n" not in str(caught.value)


def test_is_remote_and_local_path() -> None:
    for url in ("s3://b/p", "gs://b", "memory://x", "S3://b", "az://c/p"):
        assert is_remote(url), url
    for url in ("out", "./out", "/data/mirror", "file:///data/mirror", "local:///x", "C:/mirror", "weird:name"):
        assert not is_remote(url), url
    assert local_path("out/m") == Path("out/m")
    assert local_path("/data/m") == Path("/data/m")
    assert local_path("file:///data/my%20m") == Path("/data/my m")
    assert local_path("file://localhost/data/m") == Path("/data/m")
    for url in ("s3://b/p", "memory://x"):
        with pytest.raises(ValueError):
            local_path(url)
