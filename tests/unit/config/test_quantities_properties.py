"""Properties of the one size/duration reader (hypothesis): what `show_size` prints reads back the same,
every unit multiplies as documented, and nothing negative or malformed passes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crawler.config.options import ConfigError
from crawler.config.quantities import parse_duration, parse_size, show_size

BINARY = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
DECIMAL = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@given(st.integers(min_value=0, max_value=2**50))
def test_a_size_as_shown_reads_back_as_the_same_bytes(n):
    assert parse_size(show_size(n), "--max-bytes") == n


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(sorted({**BINARY, **DECIMAL})),
       st.booleans(), st.sampled_from(["", " "]))
def test_every_size_unit_multiplies_as_documented_in_any_case(number, unit, upper, space):
    text = f"{number}{space}{unit.upper() if upper else unit}"
    assert parse_size(text, "--max-bytes") == number * {**BINARY, **DECIMAL}[unit]


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(sorted(SECONDS)))
def test_every_duration_unit_multiplies_as_documented(number, unit):
    assert parse_duration(f"{number}{unit}", "--interval") == number * SECONDS[unit]


@given(st.text(max_size=12))
def test_anything_else_is_one_config_error_naming_the_flag_or_a_value(text):
    try:
        value = parse_size(text, "--max-bytes")
    except ConfigError as e:
        assert str(e).startswith("--max-bytes: ") and "\n" not in str(e)
    else:
        assert isinstance(value, int) and value >= 0


@pytest.mark.parametrize("text", ["-1", "-5M", "1e3", "M", "5 parsecs", "inf"])
def test_negatives_and_nonsense_are_refused(text):
    with pytest.raises(ConfigError):
        parse_size(text, "--max-bytes")
