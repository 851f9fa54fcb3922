"""An S3 endpoint for tests: moto's server on 127.0.0.1, spoken to over real sockets.

`tests/e2e/` is not a package; pytest puts it on sys.path (prepend import mode), so a test file declares

    pytest_plugins = ["s3_fixture"]
    if TYPE_CHECKING:  # an import before pytest_plugins would keep pytest from rewriting this module
        from s3_fixture import S3Server

`s3_server` (one per session) has `.endpoint`, `.env` (the standard AWS_* variables pointing at it) and
synchronous boto3 helpers to look at the bucket from outside the code under test. `s3_env` is the server
with that environment set for one test (code under test finds the endpoint the standard way); `s3_bucket`
is a fresh bucket per test. For a subprocess, pass `{**os.environ, **s3_server.env}`.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
_bucket_numbers = itertools.count()


class S3Server:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ENDPOINT_URL_S3": endpoint,
            # Nothing may leave 127.0.0.1: no instance-metadata probe, no proxy, no real profile or config.
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # a test dependency only: the store itself uses s3fs
            # Explicit keys, region and endpoint: this client reads no profile and probes no metadata service.
            self._client = boto3.session.Session(**_CREDENTIALS).client("s3", endpoint_url=self.endpoint)
        return self._client

    def make_bucket(self, name: str) -> None:
        self.client.create_bucket(Bucket=name)

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def list_uploads(self, bucket: str) -> list[dict[str, Any]]:
        """Unfinished multipart uploads (each a dict with Key and UploadId)."""
        return list(self.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    def get(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    try:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server
    except ImportError as e:
        pytest.fail(f"moto[server] is not installed: {e}")

    class Handler(MotoRequestHandler):
        def send_header(self, keyword: str, value: str) -> None:
            # Werkzeug's own Server header comes on top of moto's "server: amazon.com"; aiohttp refuses
            # the duplicate in debug mode (python -X dev), so only moto's is sent.
            if keyword.lower() == "server" and value.startswith("Werkzeug/"):
                return
            super().send_header(keyword, value)

    # moto's ThreadedMotoServer, with that handler. Port 0: the OS picks a free port, no race.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    try:
        server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), threaded=True,
                             request_handler=Handler)
    except Exception as e:
        pytest.fail(f"moto server did not start: {type(e).__name__}: {e}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield S3Server(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return s3_server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    name = f"test-{os.getpid()}-{next(_bucket_numbers)}"
    s3_server.make_bucket(name)
    return name
