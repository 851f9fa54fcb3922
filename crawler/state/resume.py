"""Open a mirror's fold: a saved snapshot continued with what was appended since, or the whole log."""

from __future__ import annotations

from pathlib import Path

from crawler.state import scan, scan_parallel, snapshot
from crawler.state.fold import ResumeState


def load(path: Path, query: str, models: bool = False, snapshots: bool = True, save: bool = True) -> ResumeState:
    """`models`: also index sources and uuids (model images may come without an id).

    With `snapshots`, a saved fold covering the start of the log is reused and only what was
    appended since is read; a fold that read much is saved for the next start, unless `save`
    is False (readers that must not write to the mirror, such as --dry-run).
    """
    state = snapshot.load(path, models) if snapshots else None
    if state is None:
        state = ResumeState(refs=set() if models else None, by_uuid={} if models else None)
    first = state.lines
    folded = scan_parallel.fold(path, state, start=state.covered,
                                on_bad_line=lambda n, _raw: state.bad_lines.append(first + n))
    state.covered, state.lines = folded.covered, first + folded.lines
    if state.durable_upto is not None:
        scan.settle(path, state)  # the done records past the last marker are to be re-checked
    if snapshots and save and folded.records >= snapshot.WORTH_SAVING:
        snapshot.save(path, state)
    return state.for_query(query)
