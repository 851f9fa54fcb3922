"""crawler.stops: the stop reasons users read and manifests record, and the exit code each one gives."""

from __future__ import annotations

import pytest

from crawler.stops import COMPLETE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, FATAL, Stop, exit_code

# Written into every manifest's `run` end record and read back by `status` from old manifests:
# these spellings are a file format and must never change.
RECORDED = {
    "FEED_ENDED": "feed-ended", "MAX_IMAGES": "max-images", "MAX_PAGES": "max-pages",
    "SINCE_REACHED": "since-reached", "INTERRUPTED": "interrupted", "CURSOR_REPEATED": "cursor-repeated",
    "EMPTY_PAGES": "empty-pages", "API_ERROR": "api-error", "API_REFUSED": "api-refused",
    "DISK_FULL": "disk-full", "DISK_ERROR": "disk-error", "PLAN_EXPIRED": "plan-expired",
    "STORE_UNAVAILABLE": "store-unavailable", "DISK_RESERVE": "disk-reserve", "EXECUTOR_FAILED": "executor-failed",
    "DEPTH_CAPPED": "depth-capped", "GAPS_REMAIN": "gaps-remain",
}


def test_recorded_spellings_never_change():
    assert {name: Stop[name].value for name in RECORDED} == RECORDED
    assert len({stop.value for stop in Stop}) == len(Stop)  # no two reasons share a spelling


def test_a_reason_is_the_plain_string_users_read():
    assert Stop.DISK_FULL == "disk-full" and f"{Stop.DISK_FULL}" == "disk-full" and str(Stop.MAX_PAGES) == "max-pages"
    assert Stop("since-reached") is Stop.SINCE_REACHED


def test_complete_means_everything_asked_for_was_attempted():
    assert {Stop.FEED_ENDED, Stop.MAX_IMAGES, Stop.MAX_PAGES, Stop.SINCE_REACHED} == COMPLETE


def test_fatal_reasons_are_errors_that_waiting_cannot_fix():
    assert {Stop.DISK_FULL, Stop.DISK_ERROR, Stop.DISK_RESERVE, Stop.API_REFUSED} == FATAL
    assert not FATAL & COMPLETE and Stop.INTERRUPTED not in FATAL


def test_exit_codes_are_distinct_and_conventional():
    assert (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED) == (0, 1, 2, 128 + 2)  # 130: killed by SIGINT


@pytest.mark.parametrize("reason", sorted(Stop))
@pytest.mark.parametrize("failed", [0, 1, 250])
def test_exit_code_of_every_reason(reason, failed):
    if reason == "interrupted":
        expected = 130  # resumable, whatever failed on the way
    elif reason in ("feed-ended", "max-images", "max-pages", "since-reached") and failed == 0:
        expected = 0
    else:
        expected = 1
    assert exit_code(reason, failed) == expected
    # A reason read back from a manifest is a plain str: same answer.
    assert exit_code(str(reason.value), failed) == expected


def test_an_unknown_reason_from_another_version_is_a_failure():
    assert exit_code("some-future-reason", 0) == EXIT_FAILED
    assert exit_code("", 0) == EXIT_FAILED
