"""Why a crawl stopped, and the exit code that follows: every stop reason and exit code, defined once.

The reason is printed in the crawl's last line, recorded in the manifest's `run` end record and shown by
`status`; `COMPLETE` names the reasons after which everything asked for was attempted.
"""

from __future__ import annotations

from enum import StrEnum


class Stop(StrEnum):
    """A crawl's stop reason; the value is what users read and what the manifest records."""

    FEED_ENDED = "feed-ended"  # the API gave no next cursor
    MAX_IMAGES = "max-images"
    MAX_PAGES = "max-pages"
    SINCE_REACHED = "since-reached"  # --sort Newest reached items older than --since
    INTERRUPTED = "interrupted"  # a signal (resumable)
    CURSOR_REPEATED = "cursor-repeated"
    EMPTY_PAGES = "empty-pages"
    API_ERROR = "api-error"  # an API error outlived the retries
    API_REFUSED = "api-refused"  # a fatal answer: bad key, region, bad query
    DISK_FULL = "disk-full"
    DISK_ERROR = "disk-error"  # the mirror's disk refuses writes
    DISK_RESERVE = "disk-reserve"  # --min-free reached: stopped cleanly before the disk fills (resumable)
    PLAN_EXPIRED = "plan-expired"
    STORE_UNAVAILABLE = "store-unavailable"  # follow: the object store failed a pass
    EXECUTOR_FAILED = "executor-failed"  # the Ray download workers failed (or raised)
    DEPTH_CAPPED = "depth-capped"  # a chain ended after about --depth-cap items: the API may have stopped paging
    GAPS_REMAIN = "gaps-remain"  # --deep could not prove every part of the query complete


COMPLETE = frozenset({Stop.FEED_ENDED, Stop.MAX_IMAGES, Stop.MAX_PAGES, Stop.SINCE_REACHED})
# Reasons after which `follow` stops instead of waiting for the next pass: retrying cannot help.
FATAL = frozenset({Stop.DISK_FULL, Stop.DISK_ERROR, Stop.DISK_RESERVE, Stop.API_REFUSED})

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def exit_code(reason: str, failed: int) -> int:
    """0 all done, 1 finished with failures or stopped by an error, 130 interrupted (resumable)."""
    if reason == Stop.INTERRUPTED:
        return EXIT_INTERRUPTED
    if reason in COMPLETE and not failed:
        return EXIT_OK
    return EXIT_FAILED
