"""Open a mirror's fold: a saved snapshot continued with what was appended since, or the whole log."""

from __future__ import annotations

from pathlib import Path

from crawler.state import snapshot
from crawler.state.fold import ResumeState
from crawler.state.manifest import iter_records_at


def load(path: Path, query: str, models: bool = False, snapshots: bool = True, save: bool = True) -> ResumeState:
    """`models`: also index sources and uuids (model images may come without an id).

    With `snapshots`, a saved fold covering the start of the log is reused and only what was
    appended since is read; a fold that read much is saved for the next start, unless `save`
    is False (readers that must not write to the mirror, such as --dry-run).
    """
    state = snapshot.load(path, models) if snapshots else None
    if state is None:
        state = ResumeState(refs=set() if models else None, by_uuid={} if models else None)
    fresh = 0
    first = state.lines
    progress = [state.covered, 0]
    for offset, record in iter_records_at(path, lambda n, _raw: state.bad_lines.append(first + n),
                                          start=state.covered, progress=progress):
        state.feed(offset, record)
        fresh += 1
    state.covered, state.lines = progress[0], first + progress[1]
    if snapshots and save and fresh >= snapshot.WORTH_SAVING:
        snapshot.save(path, state)
    return state.for_query(query)
