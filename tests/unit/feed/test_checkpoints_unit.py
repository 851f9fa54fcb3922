"""feed/checkpoints.py on its own: a position is handed on only when every page up to it is settled, in
page order, once per advance; a page cut short blocks every later checkpoint of the run. Property-based
over random settle orders: the ledger never hands on a page with an unsettled item at or before it.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.feed.checkpoints import PARTIAL, PageLedger

pytestmark = pytest.mark.timeout(30)


def ledger():  # type: ignore[no-untyped-def]
    advances: list[tuple[int, object]] = []
    return PageLedger(lambda page, position: advances.append((page, position))), advances


def test_a_page_advances_once_its_last_item_settles():
    book, advances = ledger()
    book.open_page(1, 2, "p2")
    book.settle(1)
    assert advances == []
    book.settle(1)
    assert advances == [(1, "p2")]


def test_an_empty_page_advances_at_once_and_none_means_the_feed_ended():
    book, advances = ledger()
    book.open_page(1, 0, None)
    assert advances == [(1, None)]


def test_a_later_page_waits_for_earlier_ones_then_one_call_names_the_furthest():
    book, advances = ledger()
    book.open_page(1, 1, "p2")
    book.open_page(2, 1, "p3")
    book.open_page(3, 1, "p4")
    book.settle(3)
    book.settle(2)
    assert advances == []
    book.settle(1)
    assert advances == [(3, "p4")]  # pages 1-3 settled together: one checkpoint, the furthest


def test_a_page_opened_before_its_predecessor_waits_for_it():
    book, advances = ledger()
    book.open_page(2, 0, "p3")
    assert advances == []
    book.open_page(1, 0, "p2")
    assert advances == [(2, "p3")]


def test_settling_nothing_is_ignored():
    book, advances = ledger()
    book.open_page(1, 1, "p2")
    book.settle(None)
    assert advances == []


def test_a_partial_page_blocks_itself_and_everything_after():
    book, advances = ledger()
    book.open_page(1, 1, "p2")
    book.open_page(2, 1, PARTIAL)
    book.open_page(3, 0, "p4")
    book.settle(1)
    assert advances == [(1, "p2")]
    book.settle(2)
    book.open_page(4, 0, "p5")
    assert advances == [(1, "p2")]


def test_pages_settled_up_to_a_partial_one_are_still_checkpointed_in_the_same_step():
    book, advances = ledger()
    book.open_page(1, 1, "p2")
    book.open_page(2, 0, PARTIAL)
    book.settle(1)  # settles page 1 and reaches the (empty) partial page 2 in one step
    assert advances == [(1, "p2")]


def test_a_partial_first_page_never_checkpoints():
    book, advances = ledger()
    book.open_page(1, 0, PARTIAL)
    book.open_page(2, 0, "p3")
    assert advances == []


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(0, 4), min_size=1, max_size=8), seed=st.integers(0, 2**32))
def test_never_past_an_unsettled_item_and_at_the_end_past_every_page(sizes, seed):
    book, advances = ledger()
    items = [page for page, size in enumerate(sizes, 1) for _ in range(size)]
    random.Random(seed).shuffle(items)
    for page, size in enumerate(sizes, 1):
        book.open_page(page, size, f"after-{page}")
    settled: list[int] = []
    for page in items:
        book.settle(page)
        settled.append(page)
        if advances:
            last = advances[-1][0]
            assert all(settled.count(p) == sizes[p - 1] for p in range(1, last + 1))
    assert [p for p, _ in advances] == sorted({p for p, _ in advances})  # forward, never twice
    assert advances[-1] == (len(sizes), f"after-{len(sizes)}")
