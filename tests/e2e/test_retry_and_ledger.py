"""Backoff schedule, Retry-After parsing, the retry loop and checkpoint bookkeeping: no network."""

import email.utils
import random
import time

import pytest

from crawler.feed.checkpoints import PARTIAL, PageLedger
from crawler.feed.pages import Position
from crawler.net.retry import Fatal, Retryable, RetryPolicy, attempts, parse_retry_after


def test_backoff_grows_is_capped_and_never_zero():
    policy = RetryPolicy(retries=10, base=1.0, cap=8.0)
    rng = random.Random(1)
    delays = [policy.delay(n, rng) for n in range(10)]
    assert all(0.5 <= d <= 8.0 for d in delays)
    assert max(delays[:2]) <= 2.0 and min(delays[5:]) >= 4.0


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("7") == 7.0
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= parse_retry_after(when) <= 31
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("999999") == 3600.0


async def test_attempts_gives_up_after_budget_with_reason():
    calls = 0

    async def failing():
        nonlocal calls
        calls += 1
        raise Retryable("http-500")

    with pytest.raises(Retryable, match=r"http-500.*after 3 tries"):
        await attempts(failing, RetryPolicy(2, 0.001, 0.002), random.Random(0))
    assert calls == 3


async def test_attempts_pauses_host_on_429_without_spending_budget():
    pauses = []
    calls = 0

    async def throttled_then_ok():
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise Retryable("http-429", retry_after=0.01)
        return "ok"

    assert await attempts(throttled_then_ok, RetryPolicy(0, 0.001, 0.002), random.Random(0), pause_host=pauses.append) == "ok"
    assert pauses == [0.01, 0.01, 0.01]


async def test_fatal_is_not_retried():
    calls = 0

    async def fatal():
        nonlocal calls
        calls += 1
        raise Fatal("http-403")

    with pytest.raises(Fatal):
        await attempts(fatal, RetryPolicy(5, 0.001, 0.002), random.Random(0))
    assert calls == 1


def test_ledger_checkpoints_only_a_settled_prefix():
    seen = []
    ledger = PageLedger(lambda page, pos: seen.append((page, pos)))
    p2, p3 = Position(cursor="a"), Position(cursor="b")
    ledger.open_page(1, 2, p2)
    ledger.open_page(2, 1, p3)
    ledger.settle(2)  # page 2 done first: nothing may be checkpointed yet
    assert seen == []
    ledger.settle(1)
    ledger.settle(1)
    assert seen == [(2, p3)]  # one checkpoint for the whole advanced prefix


def test_ledger_empty_page_and_end_and_partial():
    seen = []
    ledger = PageLedger(lambda page, pos: seen.append((page, pos)))
    ledger.open_page(1, 0, Position(cursor="x"))
    assert seen == [(1, Position(cursor="x"))]
    ledger.open_page(2, 0, PARTIAL)
    ledger.open_page(3, 0, None)
    assert seen == [(1, Position(cursor="x"))]  # nothing after a cut page
