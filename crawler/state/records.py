"""What a manifest record is: every kind, its fields, and the one function that builds each.

The manifest is JSON lines; each line is one of these records (readers skip anything else):

- `image`: one outcome for one image, keyed by `id` (or `uuid` for model images without an id);
  always `id`, `uuid`, `url`, `status`, `t`, and `source` ("model:M/version:V") when reached from a
  model. `done` adds `path`, `sha256`, `bytes`, `width`, `content_type` and the raw API `item`;
  `failed` adds `reason`, `error`, `attempts` and `item` (to retry it); `gone` adds `error`.
  The last image record of an image is its state.
- `checkpoint`: a chain's feed position after its last fully settled page (`query`, `page`, `end`,
  `cursor`, `next_query`, and `partition` for a plan's chain).
- `durable`: a group commit: every record before byte `upto` (and the files they name) is on disk.
- `run`: a crawl's `start` (query, params, settings, resume position) or `end` (reason, message,
  exit code, counts).
- `ref`: an image already mirrored reached again from another model version (`source`).
- `hwm`: follow's high-water mark, the newest `created_at` of a complete pass of `query`.
- `proof`: what a run found about the feed's depth, just before its `run` end: `deep`, `depth_cap`,
  `capped` (chains that ended near the cap), `gaps` (parts --deep could not prove whole) and, with
  --deep, `chains`, `splits`, `proven`, `pages`.

Builders (`done`, `failed`, ... `hwm`) are the only code that makes records; readers (`key_of`,
`status_of`, `durable_upto`, `is_run_end`) are how every reader of the log asks what a record says,
so a record from another tool or a torn line that parsed as JSON never raises here: it reads as "none".
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from crawler.keys import Key

Record = dict[str, Any]

IMAGE, CHECKPOINT, DURABLE, RUN, REF, HWM, PROOF = "image", "checkpoint", "durable", "run", "ref", "hwm", "proof"
DONE, FAILED, GONE = "done", "failed", "gone"


class Listed(Protocol):
    """What a record needs to know of the image it is about (a feed job, for one)."""

    @property
    def id(self) -> int | None: ...
    @property
    def uuid(self) -> str | None: ...
    @property
    def url(self) -> str: ...
    @property
    def source(self) -> str | None: ...


def key_of(record: Record) -> Key | None:
    """The image a record is about: its numeric id, else its uuid; None when it names neither."""
    ident = record.get("id")
    if isinstance(ident, int) and not isinstance(ident, bool):
        return ident
    uuid = record.get("uuid")
    return uuid if isinstance(uuid, str) and uuid else None


def status_of(record: Record) -> str | None:
    """`done`, `failed` or `gone` for an image record; None for any other record."""
    status = record.get("status")
    return status if record.get("kind") == IMAGE and isinstance(status, str) else None


def durable_upto(record: Record) -> int | None:
    """The byte offset a `durable` marker vouches for; None for any other record."""
    upto = record.get("upto")
    return upto if record.get("kind") == DURABLE and isinstance(upto, int) and not isinstance(upto, bool) else None


def is_run_end(record: Record) -> bool:
    return record.get("kind") == RUN and record.get("event") == "end"


def query_of(record: Record) -> str | None:
    """The query a checkpoint, hwm or run record belongs to."""
    query = record.get("query")
    return query if isinstance(query, str) else None


def _image(job: Listed, status: str) -> Record:
    record: Record = {"kind": IMAGE, "id": job.id, "uuid": job.uuid, "url": job.url}
    if job.source is not None:
        record["source"] = job.source
    record["status"] = status
    return record


def done(job: Listed, item: dict[str, Any], width: int | None, path: str, sha256: str, size: int,
         content_type: str | None) -> Record:
    return {**_image(job, DONE), "path": path, "sha256": sha256, "bytes": size, "width": width,
            "content_type": content_type, "item": item, "t": time.time()}


def failed(job: Listed, item: dict[str, Any], reason: str, error: str | None, attempts: int) -> Record:
    return {**_image(job, FAILED), "reason": reason, "error": error, "attempts": attempts, "item": item,
            "t": time.time()}


def refetch(job: Listed, item: dict[str, Any], reason: str, error: str) -> Record:
    """A done image whose file is missing or damaged (`verify --repair`): a `failed` record dated 0, so
    a crawl retries it and follow finds it due at once, whatever its backoff."""
    return {**failed(job, item, reason, error, 0), "t": 0.0}


def gone(job: Listed, error: str | None) -> Record:
    return {**_image(job, GONE), "error": error, "t": time.time()}


def ref(job: Listed) -> Record:
    return {"kind": REF, "id": job.id, "uuid": job.uuid, "source": job.source, "t": time.time()}


def checkpoint(query: str, page: int, position: dict[str, Any], end: bool, partition: str = "") -> Record:
    record: Record = {"kind": CHECKPOINT, "query": query, "page": page, "end": end, "t": time.time()}
    if partition:
        record["partition"] = partition
    record.update(position)
    return record


def durable(upto: int, files: int, fsync: bool, stamped: bool = True) -> Record:
    """`stamped=False` for a rewritten log (compaction), whose markers carry no time of their own."""
    record: Record = {"kind": DURABLE, "upto": upto, "files": files, "fsync": fsync}
    if stamped:
        record["t"] = time.time()
    return record


def run_start(query: str, params: dict[str, Any], settings: dict[str, Any], resume: dict[str, Any] | None,
              partitions: list[dict[str, Any]] | None = None) -> Record:
    record: Record = {"kind": RUN, "event": "start", "query": query, "params": params, "settings": settings,
                      "resume": resume, "t": time.time()}
    if partitions:
        record["partitions"] = partitions
    return record


def proof(deep: bool, depth_cap: int, capped: list[dict[str, Any]], gaps: list[dict[str, Any]],
          **found: Any) -> Record:
    return {"kind": PROOF, "deep": deep, "depth_cap": depth_cap, "capped": capped, "gaps": gaps, **found,
            "t": time.time()}


def run_end(query: str, reason: str, message: str, exit_code: int, params: dict[str, Any],
            counts: dict[str, Any]) -> Record:
    return {"kind": RUN, "event": "end", "query": query, "reason": reason, "message": message,
            "exit_code": exit_code, "params": params, "counts": counts, "t": time.time()}


def hwm(query: str, created_at: str) -> Record:
    return {"kind": HWM, "query": query, "created_at": created_at, "t": time.time()}
