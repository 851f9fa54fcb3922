"""urls.py's options segment, to the letter: an option's name is what precedes its first "=", and a
refused URL says why (the message reaches the user through the image's failure reason)."""

from __future__ import annotations

import pytest

from crawler import urls

H = "https://image.civitai.com/xG1nkqKTMzGDvpLrqFT7WA/0b6d3c8e-2d1a-4f7e-9a0e-3b1c2a9f7e11"


def test_an_option_value_holding_an_equals_sign_is_still_that_option():
    assert urls.rewrite_size(f"{H}/width=450=x,anim=false/1.jpeg", width=300) == f"{H}/width=300,anim=false/1.jpeg"


def test_a_path_of_another_form_is_refused_naming_the_forms():
    with pytest.raises(urls.BadImageUrl) as raised:
        urls.rewrite_size("https://image.civitai.com/a/b/c/d/e/1.jpeg", width=10)
    assert str(raised.value) == "not a /{hash1}/{uuid}/{options}/{name} or image-b2 media path"


def test_an_unknown_option_is_refused_naming_its_first_40_characters():
    option = "frobnicate=" + "y" * 60
    with pytest.raises(urls.BadImageUrl) as raised:
        urls.rewrite_size(f"{H}/{option}/1.jpeg", width=10)
    assert str(raised.value) == f"unrecognised option {option[:40]!r} in the options segment"
