"""Read-only views of a mirror: `status` (what is done, failed, why the last run stopped) and `verify`.

Both stream the manifest and never write to the mirror, so they are safe while a crawl is running.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crawler.keys import Key
from crawler.logs import clock, counts
from crawler.state import exclusions, records
from crawler.state.current import current_done
from crawler.state.manifest import MANIFEST_NAME, iter_records
from crawler.state.records import CHECKPOINT, DONE, FAILED, GONE, IMAGE, PROOF, RUN, key_of
from crawler.stops import COMPLETE
from crawler.store.base import Store


@dataclass(slots=True)
class Summary:
    done: int = 0
    failed: int = 0
    gone: int = 0
    bytes: int = 0
    failed_by_reason: Counter[str] = field(default_factory=Counter)
    failed_examples: list[dict[str, Any]] = field(default_factory=list)
    last_checkpoint: dict[str, Any] | None = None
    last_run: dict[str, Any] | None = None
    last_success: float | None = None  # when the last run (or follow pass) that completed its feed ended
    bad_lines: list[int] = field(default_factory=list)
    records: int = 0
    excluded: int = 0  # done images in the exclusion list (left out of exports)
    # The last run's proof (`proof` record): chains that ended at about --depth-cap, --deep's gaps and cost.
    depth: dict[str, Any] | None = None
    gaps: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"done": self.done, "failed": self.failed, "gone": self.gone, "bytes": self.bytes,
                "failed_by_reason": dict(self.failed_by_reason), "failed_examples": self.failed_examples,
                "last_checkpoint": self.last_checkpoint, "excluded": self.excluded, "last_run": self.last_run,
                "last_success": self.last_success, "bad_lines": self.bad_lines[:100], "records": self.records,
                "depth": self.depth, "gaps": self.gaps}

    def success_age(self) -> float | None:
        return None if self.last_success is None else time.time() - self.last_success


def summarise(root: Path, examples: int = 20) -> Summary:
    summary = Summary()
    latest: dict[Key, tuple[str, int, str]] = {}  # key -> (status, bytes, reason): small, unlike whole records
    failed_records: dict[Key, dict[str, Any]] = {}
    proof: dict[str, Any] | None = None  # written just before its run's end record
    started: Any = None  # the last run start's time, for how long the last run took
    for record in iter_records(root / MANIFEST_NAME, lambda n, _r: summary.bad_lines.append(n)):
        summary.records += 1
        kind = record["kind"]
        if kind == IMAGE:
            key = key_of(record)
            if key is None:
                continue
            status = str(records.status_of(record))
            size = record["bytes"] if isinstance(record.get("bytes"), int) else 0
            latest[key] = (status, size, str(record.get("reason") or record.get("error") or ""))
            if status == FAILED:
                failed_records[key] = {"key": key, "url": record.get("url"),
                                       "error": record.get("error") or record.get("reason") or "no message"}
            else:
                failed_records.pop(key, None)
        elif kind == CHECKPOINT:
            summary.last_checkpoint = {k: record.get(k) for k in ("query", "page", "end", "cursor", "t")}
        elif kind == PROOF:
            proof = record
        elif kind == RUN and record.get("event") == "start":
            started = record.get("t")
        elif records.is_run_end(record):
            summary.depth, summary.gaps = _depth(proof), list(proof.get("gaps") or []) if proof else []
            proof = None
            summary.last_run = {k: record.get(k) for k in ("query", "reason", "message", "exit_code", "params", "counts", "t")}
            summary.last_run["started"] = started
            if record.get("reason") in COMPLETE:
                summary.last_success = record.get("t") if isinstance(record.get("t"), (int, float)) else None
    for status, size, reason in latest.values():
        if status == DONE:
            summary.done += 1
            summary.bytes += size
        elif status == FAILED:
            summary.failed += 1
            summary.failed_by_reason[reason] += 1
        elif status == GONE:
            summary.gone += 1
    summary.failed_examples = list(failed_records.values())[:examples]
    excluded = exclusions.load(root)
    summary.excluded = sum(1 for key, (status, _, _) in latest.items() if status == DONE and str(key) in excluded)
    return summary


def _when(run: dict[str, Any]) -> str:
    """'ended 2026-12-02 14:20 after 3m05s, ' for a run end (and its start) with times; '' otherwise."""
    end, start = run.get("t"), run.get("started")
    if not isinstance(end, (int, float)):
        return ""
    took = f" after {clock(end - start)}" if isinstance(start, (int, float)) and start <= end else ""
    return f"ended {time.strftime('%Y-%m-%d %H:%M', time.localtime(end))}{took}, "


def _depth(proof: dict[str, Any] | None) -> dict[str, Any] | None:
    if proof is None:
        return None
    return {k: proof.get(k) for k in ("deep", "depth_cap", "capped", "chains", "splits", "pages", "proven") if k in proof}


@dataclass(frozen=True, slots=True)
class Problem:
    key: Key
    path: str
    what: str  # "missing" | "mismatch" | "unreadable"


async def verify(root: Path, store: Store, concurrency: int = 8) -> tuple[int, list[Problem]]:
    """Re-hash every done image in `store` (disk or object store) against its record in the manifest
    under `root`; (images checked, problems). Streams the done records (an offset per image in memory)."""
    checked = 0
    problems: list[Problem] = []
    gate = asyncio.Semaphore(concurrency)

    async def check(key: Key, rel: str, sha256: Any) -> None:
        try:
            found = await store.digest(rel)
        except OSError:
            problems.append(Problem(key, rel, "unreadable"))
            return
        finally:
            gate.release()
        if found is None:
            problems.append(Problem(key, rel, "missing"))
        elif found[0] != sha256:
            problems.append(Problem(key, rel, "mismatch"))

    async with asyncio.TaskGroup() as group:
        for record in current_done(root / MANIFEST_NAME):
            key = key_of(record)
            if key is None:
                continue
            rel = str(record.get("path") or "")
            checked += 1
            # A record pointing outside the mirror is itself a problem; never follow it.
            if not rel or ".." in Path(rel).parts or Path(rel).is_absolute():
                problems.append(Problem(key, rel, "unreadable"))
                continue
            await gate.acquire()  # bounds the tasks alive at once; released by each when its read ends
            group.create_task(check(key, rel, record.get("sha256")))
    problems.sort(key=lambda p: str(p.key))
    return checked, problems


def format_summary(summary: Summary) -> Iterator[str]:
    yield f"done:    {summary.done} images, {summary.bytes / 1e6:.1f} MB"
    reasons = ", ".join(f"{r}: {n}" for r, n in summary.failed_by_reason.most_common())
    yield f"failed:  {summary.failed}" + (f" ({reasons})" if reasons else "")
    yield f"gone:    {summary.gone}"
    if summary.excluded:
        yield f"excluded: {summary.excluded} done image(s) left out of exports ({exclusions.EXCLUSIONS_NAME})"
    for example in summary.failed_examples:
        yield f"  failed {example['key']}: {example['error']}"
    if summary.failed > len(summary.failed_examples):
        yield f"  and {summary.failed - len(summary.failed_examples)} more (status --json lists them)"
    if summary.last_checkpoint:
        cp = summary.last_checkpoint
        where = "feed finished" if cp.get("end") else f"page {cp.get('page')}, cursor {cp.get('cursor') or '(a next-page link)'}"
        yield f"last checkpoint: {where} (query {cp.get('query')})"
    run = summary.last_run
    if run:
        yield f"last run: {_when(run)}stopped because {run.get('reason')}: {run.get('message')} (exit {run.get('exit_code')})"
        filtered = (run.get("counts") or {}).get("filtered")
        if filtered:
            yield f"filtered out by the last run: {counts(filtered, most=len(filtered))}"
        levels = (run.get("counts") or {}).get("levels")
        if levels:
            yield f"levels listed: {counts(levels, most=len(levels))}"
    else:
        yield "last run: none finished (a crawl may be running, or was killed)"
    depth = summary.depth or {}
    for capped in depth.get("capped") or []:
        yield (f"depth-capped: {capped.get('partition') or 'the query'} ended after {capped.get('listed')} item(s), "
               f"about --depth-cap {depth.get('depth_cap')}: rerun with --deep to mirror all of it")
    if depth.get("deep"):
        yield (f"deep: {depth.get('chains')} chain(s), {depth.get('splits')} split(s), {depth.get('pages')} page(s); "
               f"{len(depth.get('proven') or [])} part(s) proven whole, {len(summary.gaps)} gap(s)")
    for gap in summary.gaps:
        but = gap.get("except_base_models") or []
        narrowed = f" (except images of base model {', '.join(but)}, proven alone)" if but else ""
        yield (f"  gap {gap.get('partition')}: nothing proven{narrowed} between {gap.get('created_after')} and "
               f"{gap.get('created_before')} ({gap.get('listed_newest')} listed newest first, "
               f"{gap.get('listed_oldest')} oldest first)")
    if summary.bad_lines:
        yield f"warning: {len(summary.bad_lines)} unreadable manifest line(s) ignored (first: line {summary.bad_lines[0]})"
