"""net/retry.py on its own: what a Retry-After header means, the backoff schedule, and the retry loop.

`attempts` is driven with requests that fail as scripted; its sleeps are recorded instead of slept,
so each test states exactly how long the loop waited and what it told the host gate.
"""

from __future__ import annotations

import asyncio
import email.utils
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.net import retry
from crawler.net.retry import Fatal, Gone, RequestCounters, Retryable, RetryPolicy, attempts, parse_retry_after

pytestmark = pytest.mark.timeout(30)

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("value", "seconds"), [
    ("7", 7.0), (" 2.5 ", 2.5), ("0", 0.0), ("-4", 0.0), ("86400", 3600.0), ("3600", 3600.0), ("3599.5", 3599.5),
])
def test_delta_seconds_are_read_clamped_to_zero_and_an_hour(value, seconds):
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize("value", [None, "", "soon", "nan", "NaN", "Wed, 99 Foo 2026 99:99:99 GMT"])
def test_absent_or_garbled_is_none(value):
    assert parse_retry_after(value) is None


def test_an_http_date_is_seconds_from_now():
    date = email.utils.formatdate(NOW + 30, usegmt=True)
    assert parse_retry_after(date, now=NOW) == 30.0
    assert parse_retry_after(date, now=NOW + 40) == 0.0  # already past
    assert parse_retry_after(email.utils.formatdate(NOW + 7200, usegmt=True), now=NOW) == 3600.0


def test_an_http_date_without_now_is_read_against_the_clock(monkeypatch):
    monkeypatch.setattr(retry.time, "time", lambda: NOW)
    assert parse_retry_after(email.utils.formatdate(NOW + 12, usegmt=True)) == 12.0


@settings(max_examples=60, deadline=None)
@given(attempt=st.integers(min_value=0, max_value=200), base=st.floats(0.001, 5), cap=st.floats(0.001, 60),
       seed=st.integers(0, 2**32))
def test_backoff_is_capped_exponential_with_equal_jitter(attempt, base, cap, seed):
    policy = RetryPolicy(retries=3, base=base, cap=cap)
    ceiling = min(cap, base * 2 ** min(attempt, 30))
    delay = policy.delay(attempt, random.Random(seed))
    assert ceiling / 2 <= delay <= ceiling


def test_backoff_doubles_per_attempt_until_the_cap():
    policy = RetryPolicy(retries=3, base=0.1, cap=1.0)

    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    assert [round(policy.delay(n, Top()), 6) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert RetryPolicy(3, 0.1, 1.0).throttle_budget == 50


class Script:
    """A request failing as scripted (exceptions in order), then answering "ok"."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


@pytest.fixture
def sleeps(monkeypatch):
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(retry.asyncio, "sleep", fake_sleep)
    return slept


POLICY = RetryPolicy(retries=2, base=0.1, cap=1.0)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_a_success_is_returned_without_waiting(sleeps):
    request = Script()
    assert run(attempts(request, POLICY, random.Random(1))) == "ok"
    assert request.calls == 1 and sleeps == []


def test_retryable_failures_back_off_then_succeed(sleeps):
    request = Script(Retryable("http-500"), Retryable("connection"))
    seen: list[tuple[str, float]] = []
    result = run(attempts(request, POLICY, random.Random(1), on_retry=lambda e, w: seen.append((e.reason, w))))
    assert result == "ok" and request.calls == 3
    assert len(sleeps) == 2 and 0.05 <= sleeps[0] <= 0.1 and 0.1 <= sleeps[1] <= 0.2
    assert [reason for reason, _ in seen] == ["http-500", "connection"] and [w for _, w in seen] == sleeps


def test_a_retry_waits_at_least_the_retry_after_the_server_sent(sleeps):
    request = Script(Retryable("http-503", retry_after=3.0), Retryable("http-503", retry_after=0.0))
    run(attempts(request, POLICY, random.Random(1)))
    assert sleeps[0] == 3.0 and 0.1 <= sleeps[1] <= 0.2


def test_the_budget_spent_raises_the_last_failure_with_the_number_of_tries(sleeps):
    request = Script(Retryable("http-500"), Retryable("http-500"), Retryable("truncated", "3 of 9", retry_after=2.0))
    with pytest.raises(Retryable) as raised:
        run(attempts(request, POLICY, random.Random(1)))
    assert request.calls == 3 and len(sleeps) == 2
    assert raised.value.reason == "truncated" and raised.value.retry_after == 2.0
    assert raised.value.detail == "3 of 9 (after 3 tries)"


def test_no_retries_means_one_try():
    request = Script(Retryable("http-500"))
    with pytest.raises(Retryable) as raised:
        run(attempts(request, RetryPolicy(retries=0, base=0.1, cap=1.0), random.Random(1)))
    assert request.calls == 1 and raised.value.detail == "after 1 try"
    assert str(raised.value) == "http-500: after 1 try"  # no colon before a parenthesis, no "1 tries"


@pytest.mark.parametrize("outcome", [Gone("http-404"), Fatal("too-large")])
def test_gone_and_fatal_are_never_retried(sleeps, outcome):
    request = Script(outcome)
    with pytest.raises(type(outcome)):
        run(attempts(request, POLICY, random.Random(1)))
    assert request.calls == 1 and sleeps == []


def test_a_429_pauses_the_host_for_its_retry_after_and_spends_no_retry(sleeps):
    paused: list[float] = []
    request = Script(*[Retryable("http-429", retry_after=1.5)] * 5, Retryable("http-500"), Retryable("http-500"))
    assert run(attempts(request, POLICY, random.Random(1), pause_host=paused.append)) == "ok"
    assert paused == [1.5] * 5  # the gate holds every worker; this one does not sleep on its own
    assert len(sleeps) == 2  # only the two 500s slept (and spent the retries)


def test_a_429_without_a_pause_hook_sleeps_here_and_without_retry_after_backs_off(sleeps):
    request = Script(Retryable("http-429", retry_after=0.7), Retryable("http-429"))
    seen: list[tuple[str, float]] = []
    run(attempts(request, POLICY, random.Random(1), on_retry=lambda e, w: seen.append((e.reason, w))))
    assert sleeps[0] == 0.7 and 0.2 <= sleeps[1] <= 0.4  # delay(2): the second throttle, without a header
    assert seen == [("http-429", w) for w in sleeps]


def test_past_the_throttle_budget_429s_count_as_failures(sleeps):
    policy = RetryPolicy(retries=1, base=0.1, cap=1.0, throttle_budget=2)
    paused: list[float] = []
    request = Script(*[Retryable("http-429", retry_after=0.5)] * 4)
    with pytest.raises(Retryable) as raised:
        run(attempts(request, policy, random.Random(1), pause_host=paused.append))
    assert paused == [0.5, 0.5] and request.calls == 4
    assert sleeps == [0.5]  # the third 429 is a failure: it waits max(backoff, Retry-After)
    assert raised.value.reason == "http-429" and raised.value.detail == "after 2 tries"


def test_counters_tell_throttles_from_retries():
    counters = RequestCounters()
    counters.count_retry(Retryable("http-429"), 1.0)
    counters.count_retry(Retryable("http-429"), 1.0)
    counters.count_retry(Retryable("http-429"), 1.0)
    counters.count_retry(Retryable("http-500"), 1.0)
    counters.count_retry(Retryable("connection"), 1.0)
    assert (counters.throttled, counters.retries, counters.requests) == (3, 2, 0)
    assert not counters.statuses


def test_failures_say_their_reason_and_detail():
    assert str(Retryable("http-500", "body")) == "http-500: body" and str(Gone("http-404")) == "http-404"
    error = Retryable("http-429", retry_after=4.0)
    assert (error.reason, error.detail, error.retry_after) == ("http-429", "", 4.0)
    assert Retryable("x").retry_after is None
