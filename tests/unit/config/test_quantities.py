"""One reading of sizes and durations for every option that takes one (flags, config files, follow's own)."""

from __future__ import annotations

import pytest

from crawler.cli.parsing import duration, size
from crawler.config.options import ConfigError
from crawler.config.quantities import parse_duration, parse_size, show_duration, show_size


@pytest.mark.parametrize(("text", "expected"), [
    ("512", 512), ("512B", 512), ("1K", 1024), ("512M", 512 * 2**20), ("2g", 2 * 2**30), ("1T", 2**40),
    ("500KB", 500_000), ("500MB", 500_000_000), ("1.5GB", 1_500_000_000), ("2 GiB", 2 * 2**30), ("1MiB", 2**20),
    ("1tb", 10**12), (" 3 mb ", 3_000_000), (4096, 4096)])
def test_sizes(text, expected):
    assert parse_size(text, "--max-bytes") == expected == size(str(text), "--max-bytes")


@pytest.mark.parametrize(("text", "expected"), [
    ("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0), ("1d", 86400.0), ("1.5h", 5400.0), (30, 30.0)])
def test_durations(text, expected):
    assert parse_duration(text, "--interval") == expected == duration(str(text), "--interval")


@pytest.mark.parametrize("text", ["", "M", "12Q", "-5M", "1e3", "5 meg", "nan", "inf"])
def test_a_bad_size_names_the_flag_and_gives_an_example(text):
    with pytest.raises(ConfigError, match=r"^--max-bytes: .* is not a size such as 512M"):
        parse_size(text, "--max-bytes")


def test_zero_is_refused_where_a_positive_amount_is_needed():
    assert parse_duration("0", "--backoff-base") == 0.0  # the option's own bounds decide
    with pytest.raises(ConfigError, match="more than zero"):
        duration("0s", "--interval")


def test_defaults_are_shown_as_typed():
    assert (show_size(512 * 2**20), show_size(256 * 10**6), show_size(1500)) == ("512M", "256MB", "1500")
    assert (show_duration(600), show_duration(5.0), show_duration(0.5), show_duration(7200)) == ("10m", "5s", "0.5s", "2h")
