"""Images in an object store (s3://bucket/prefix, gs://..., any fsspec URL) through fsspec's async API.

    store = RemoteStore("s3://bucket/mirror", parse_storage_options(["region_name=eu-west-1"]))
    await store.open(); await store.clear_leftovers()   # the single writer, at start
    sink = store.sink("images/000/012/12345.jpeg", "image/jpeg")
    await sink.write(chunk) ...; await sink.commit()     # or await sink.abort()
    await store.close()

The contract of `crawler.store.base.Store`, as `DiskStore` keeps it on disk: nothing is visible at a
final key before `commit()`, which the caller calls only after checking size and sha256, and kill -9
never leaves a partial object there.
- S3: a body of up to `part_size` bytes is held in memory and sent at commit by one PutObject, which S3
  applies whole or not at all. A larger body becomes a multipart upload, one part per `part_size` (memory
  stays about one part per sink); parts are invisible until CompleteMultipartUpload, which only `commit()`
  sends. A killed run therefore leaves unfinished uploads, never objects; `clear_leftovers()` at the next
  start aborts them (only the single writer calls it, so no upload in use is aborted).
- Other fsspec backends: the whole body is held and written at commit by one `pipe_file` (one upload on
  object stores such as gcsfs; sync-only backends such as memory:// run in a thread).

Credentials and endpoint come the standard way: for S3, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (botocore reads them itself), or options.

Errors, each one line of text:
- `open()`: StoreError when the bucket/root is missing, refused or unreachable, or the URL has no backend.
- `Sink.write()`/`commit()`, `stat()`, `digest()`, `read()`, `list()`, `clear_leftovers()`: StoreUnavailable
  (an OSError) for any backend failure (connection, 5xx, throttling, refused), to be retried like a network
  error. A missing object is None from `stat()`/`digest()` and FileNotFoundError from `read()`.
- `Sink.abort()` never raises: an upload it fails to abort is aborted by the next `clear_leftovers()`.
fsspec and the backend package (s3fs, gcsfs...) are imported only by `RemoteStore.open()`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any

# URL helpers live in crawler.locations (the CLI parses --out and --storage-option there); exported here too.
from crawler.locations import is_remote, local_path, parse_storage_options
from crawler.store.errors import StoreError, StoreUnavailable

__all__ = ["RemoteStore", "Sink", "StoreError", "StoreUnavailable", "is_remote", "local_path", "parse_storage_options"]

MIN_PART_SIZE = 5 * 2**20  # S3's minimum for every part but the last
DEFAULT_PART_SIZE = 8 * 2**20
_READ_CHUNK = 2**20


def _line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}"[:300] if text else type(e).__name__


class RemoteStore:
    """Objects under `url` (e.g. s3://bucket/prefix) through fsspec's async interface."""

    remote = True

    def __init__(self, url: str, storage_options: dict[str, Any], part_size: int = DEFAULT_PART_SIZE) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size {part_size} is below S3's minimum of {MIN_PART_SIZE} bytes")
        self.url = url.rstrip("/")
        self.part_size = part_size
        self._options = dict(storage_options)
        self._fs: Any = None
        self._session: Any = None  # what close() closes: the s3 client or aiohttp session of set_session()
        self._s3 = False
        self._async = False
        self._root = ""  # the backend's path of url
        self._bucket = ""
        self._prefix = ""  # s3 key prefix, "" or ending in "/"

    async def open(self) -> None:
        try:
            import fsspec
        except ImportError:
            raise StoreError(f"{self.url}: needs fsspec and its backend: pip install 'civitai-mirror[s3]'") from None

        protocol = fsspec.core.split_protocol(self.url)[0] or "file"
        try:
            cls = fsspec.get_filesystem_class(protocol)
        except (ImportError, ValueError) as e:
            raise StoreError(f"{self.url}: no fsspec backend for {protocol}:// ({_line(e)})") from None
        self._root = cls._strip_protocol(self.url).rstrip("/")
        self._async = bool(getattr(cls, "async_impl", False))
        try:
            # skip_instance_cache: fsspec would hand every store the same instance, bound to one loop and
            # closed by whichever store closes first.
            if self._async:
                self._fs = cls(asynchronous=True, skip_instance_cache=True, **self._options)
                if hasattr(self._fs, "set_session"):
                    self._session = await self._fs.set_session()
            else:
                self._fs = await asyncio.to_thread(cls, skip_instance_cache=True, **self._options)
            self._s3 = hasattr(self._fs, "_call_s3")
            if self._s3:
                await self._check_bucket()
            else:  # object stores have no folders: an absent root is fine, a failed or refused call is not
                await self._run("exists", self._root)
        except BaseException as e:
            await self.close()
            if isinstance(e, StoreError) or not isinstance(e, Exception):
                raise
            raise StoreError(f"{self.url}: {_line(e)}") from None

    async def _check_bucket(self) -> None:
        from botocore.exceptions import ClientError

        self._bucket, key, _ = self._fs.split_path(self._root)
        self._prefix = f"{key.strip('/')}/" if key.strip("/") else ""
        where = f"s3://{self._bucket}"
        try:
            await self._session.head_bucket(Bucket=self._bucket)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket"):
                raise StoreError(f"{where}: the bucket does not exist (or these credentials cannot see it)") from None
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StoreError(f"{where}: access refused with these credentials ({code})") from None
            raise StoreError(f"{where}: {_line(e)}") from None
        except Exception as e:
            raise StoreError(f"{where}: cannot reach the endpoint ({_line(e)})") from None

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def clear_leftovers(self) -> int:
        if not self._s3:
            return 0  # other backends write only at commit: nothing partial can be left
        aborted = 0
        markers: dict[str, Any] = {}
        # Only keys this mirror writes (under images/): other writers' uploads in the bucket are not ours.
        prefix: dict[str, Any] = {"Prefix": f"{self._prefix}images/"}
        while True:
            page = await self._call("list_multipart_uploads", **prefix, **markers)
            for upload in page.get("Uploads", []):
                await self._call("abort_multipart_upload", Key=upload["Key"], UploadId=upload["UploadId"])
                aborted += 1
            if not page.get("IsTruncated"):
                return aborted
            markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}

    def sink(self, rel_path: str, content_type: str) -> Sink:
        return Sink(self, rel_path, content_type)

    async def stat(self, rel_path: str) -> int | None:
        try:
            if self._s3:
                head = await self._call("head_object", missing_ok=True, Key=self._key(rel_path))
                return int(head["ContentLength"])
            return int((await self._run("info", self._path(rel_path), missing_ok=True))["size"])
        except FileNotFoundError:
            return None

    async def digest(self, rel_path: str) -> tuple[str, int] | None:
        digest, size = hashlib.sha256(), 0
        try:
            async for chunk in self._chunks(rel_path):
                digest.update(chunk)
                size += len(chunk)
        except FileNotFoundError:
            return None
        return digest.hexdigest(), size

    async def read(self, rel_path: str) -> bytes:
        return b"".join([chunk async for chunk in self._chunks(rel_path)])

    async def _chunks(self, rel_path: str) -> AsyncIterator[bytes]:
        if not self._s3:
            yield await self._run("cat_file", self._path(rel_path), missing_ok=True)
            return
        response = await self._call("get_object", missing_ok=True, Key=self._key(rel_path))
        try:
            # Streamed, so that the digest of a large object need not fit in memory.
            async with response["Body"] as body:
                while chunk := await body.read(_READ_CHUNK):
                    yield chunk
        except Exception as e:
            raise StoreUnavailable(f"{self.url}/{rel_path}: reading failed: {_line(e)}") from e

    async def list(self, prefix: str = "") -> list[str]:
        """Complete objects under the folder `prefix` ("" for all), as paths relative to `url`."""
        folder = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        if not self._s3:
            found = await self._run("find", f"{self._root}/{folder}".rstrip("/"))
            return sorted(path[len(self._root) + 1:] for path in found)
        keys: list[str] = []
        token: dict[str, Any] = {}
        while True:
            page = await self._call("list_objects_v2", Prefix=self._prefix + folder, **token)
            keys.extend(obj["Key"][len(self._prefix):] for obj in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = {"ContinuationToken": page["NextContinuationToken"]}

    # -- backend calls: every failure becomes one of the documented exceptions ---------------------

    def _key(self, rel_path: str) -> str:
        return self._prefix + rel_path

    def _path(self, rel_path: str) -> str:
        return f"{self._root}/{rel_path}"

    async def _call(self, method: str, missing_ok: bool = False, **kwargs: Any) -> Any:
        """One S3 request through s3fs, which retries throttling and dropped connections itself."""
        return await self._guard(method, self._fs._call_s3(method, Bucket=self._bucket, **kwargs), missing_ok)

    async def _run(self, method: str, *args: Any, missing_ok: bool = False) -> Any:
        if self._async:
            return await self._guard(method, getattr(self._fs, f"_{method}")(*args), missing_ok)
        return await self._guard(method, asyncio.to_thread(getattr(self._fs, method), *args), missing_ok)

    async def _guard(self, method: str, call: Awaitable[Any], missing_ok: bool) -> Any:
        try:
            return await call
        except FileNotFoundError:
            if missing_ok:
                raise
            raise StoreUnavailable(f"{self.url}: {method}: not found") from None
        except Exception as e:
            raise StoreUnavailable(f"{self.url}: {method} failed: {_line(e)}") from e


class Sink:
    """One upload of one object, for one download attempt: invisible until `commit()`."""

    __slots__ = ("_buffer", "_closed", "_parts", "_rel", "_store", "_type", "_upload_id")

    def __init__(self, store: RemoteStore, rel_path: str, content_type: str) -> None:
        self._store = store
        self._rel = rel_path
        self._type = content_type
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._closed = False

    @property
    def bytes_buffered(self) -> int:
        return len(self._buffer)

    async def write(self, chunk: bytes) -> None:
        if self._closed:
            raise RuntimeError(f"{self._rel}: write after commit or abort")
        self._buffer += chunk
        size = self._store.part_size
        # Strictly over part_size: a body of exactly part_size bytes still goes as one atomic PUT.
        while self._store._s3 and len(self._buffer) > size:
            part = bytes(self._buffer[:size])  # botocore wants bytes, not a bytearray
            del self._buffer[:size]
            await self._send_part(part)

    async def commit(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self._rel}: commit after commit or abort")
        store = self._store
        if not store._s3:
            await store._run("pipe_file", store._path(self._rel), bytes(self._buffer))
        elif self._upload_id is None:
            await store._call("put_object", Key=store._key(self._rel), Body=bytes(self._buffer), ContentType=self._type)
        else:
            if self._buffer:
                await self._send_part(bytes(self._buffer))
            await store._call("complete_multipart_upload", Key=store._key(self._rel), UploadId=self._upload_id,
                              MultipartUpload={"Parts": self._parts})
            self._upload_id = None
        self._closed = True
        self._buffer = bytearray()

    async def abort(self) -> None:
        self._closed = True
        self._buffer = bytearray()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            try:
                await self._store._call("abort_multipart_upload", Key=self._store._key(self._rel), UploadId=upload_id)
            except Exception:
                pass

    async def _send_part(self, part: bytes) -> None:
        store = self._store
        key = store._key(self._rel)
        if self._upload_id is None:
            created = await store._call("create_multipart_upload", Key=key, ContentType=self._type)
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        sent = await store._call("upload_part", Key=key, UploadId=self._upload_id, PartNumber=number, Body=part)
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})
