"""What the progress line's ETA counts toward: --max-images, a saved dry-run count, the smaller of both."""

from __future__ import annotations

from crawler.run.dry_counts import DryCount
from crawler.run.progress import Total, eta, total
from crawler.stats import CrawlStats


def _count(matched: int, mirrored_then: int, already: int = 0, from_top: bool = True) -> DryCount:
    return DryCount(matched, already, matched - already, mirrored_then, from_top, "2026-12-02T16:00:00+00:00")


def test_no_total_without_max_images_or_a_count():
    assert total(None, None, 50) is None


def test_max_images_alone_counts_images_already_mirrored_as_the_walk_passes_them():
    known = total(200, None, 0)
    assert known == Total(200)
    stats = CrawlStats(done=30, skipped_done=20)
    assert known.held(stats) == 50


def test_the_smaller_of_max_images_and_a_whole_query_count_wins():
    assert total(200, _count(120, 0), 0) == Total(120, label=" (dry-run count)")
    assert total(100, _count(120, 0), 0) == Total(100)
    assert total(200, _count(120, 0, from_top=False), 0) == Total(200)  # a count from a checkpoint: part of it


def test_a_count_takes_off_what_was_mirrored_since_it_was_made():
    known = total(None, _count(300, mirrored_then=10, already=10), mirrored_now=60)
    assert known == Total(300, 60, walks_from_top=False, label=" (dry-run count)")
    assert known.held(CrawlStats(done=40, skipped_done=500)) == 100  # passing mirrored ones adds nothing
    assert total(None, _count(300, 0), 250).held(CrawlStats(done=99)) == 300  # never past the total


def test_a_count_used_up_gives_no_eta():
    assert total(None, _count(300, 0), mirrored_now=300) is None  # a rerun after the crawl it counted


def test_eta_is_what_is_left_over_the_rate():
    stats = CrawlStats(done=10)
    stats.started -= 10.0  # one image a second
    assert eta(stats, Total(100)) == " | 10/100, ETA 1m30s"
    assert eta(CrawlStats(), Total(100)) == " | 0/100"  # nothing settled yet: no rate, no ETA
