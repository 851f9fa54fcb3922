"""URL rewriting, keys, allow-list and redaction: pure functions, no network."""

import pytest

from crawler import urls

H = "https://image.civitai.com/xG1nkqKTMzGDvpLrqFT7WA/0b6d3c8e-2d1a-4f7e-9a0e-3b1c2a9f7e11"


def test_width_replaces_existing_width():
    assert urls.rewrite_size(f"{H}/width=832/9173928.jpeg", width=450) == f"{H}/width=450/9173928.jpeg"


def test_width_replaces_original_true():
    assert urls.rewrite_size(f"{H}/original=true/abc.jpeg", width=1024) == f"{H}/width=1024/abc.jpeg"


def test_original_replaces_width_and_keeps_other_options():
    got = urls.rewrite_size(f"{H}/anim=false,width=450,quality=90/1.jpeg", original=True)
    assert got == f"{H}/original=true,anim=false,quality=90/1.jpeg"


def test_width_keeps_extra_options():
    assert urls.rewrite_size(f"{H}/anim=false,width=450/1.jpeg", width=96) == f"{H}/width=96,anim=false/1.jpeg"


def test_no_size_asked_leaves_url_unchanged():
    url = f"{H}/width=832/9173928.jpeg?x=1"
    assert urls.rewrite_size(url) == url


def test_rewrite_refuses_short_paths():
    with pytest.raises(urls.BadImageUrl):
        urls.rewrite_size("https://image.civitai.com/x/1.jpeg", width=10)


def test_uuid_and_id_from_url():
    assert urls.uuid_of(f"{H}/width=832/9173928.jpeg") == "0b6d3c8e-2d1a-4f7e-9a0e-3b1c2a9f7e11"
    assert urls.id_from_filename(f"{H}/width=832/9173928.jpeg") == 9173928
    assert urls.id_from_filename(f"{H}/original=true/0b6d3c8e-2d1a-4f7e-9a0e-3b1c2a9f7e11.jpeg") is None
    assert urls.uuid_of("https://image.civitai.com/a/../../etc/passwd") is None


def test_allow_list_is_exact_host_and_http_only():
    allowed = frozenset({"image.civitai.com"})
    assert urls.is_allowed(f"{H}/width=1/1.jpeg", allowed)
    assert not urls.is_allowed("https://image.civitai.com.evil.example/a/b/c/1.jpeg", allowed)
    assert not urls.is_allowed("https://user@image.civitai.com/a/b/c/1.jpeg", allowed)
    assert not urls.is_allowed("file:///etc/passwd", allowed)
    assert not urls.is_allowed("ftp://image.civitai.com/a/b/c/1.jpeg", allowed)
    assert not urls.is_allowed("https:///a/b/c/1.jpeg", allowed | {""})  # a blank list entry admits no host-less URL


def test_redact_hides_token():
    got = urls.redact("https://civitai.com/api/v1/images?limit=2&token=SECRET123&cursor=1%7C2")
    assert "SECRET123" not in got and "REDACTED" in got and "cursor=1%7C2" in got


def test_next_page_query_drops_token_and_keeps_cursor():
    q = urls.query_of("https://civitai.com/api/v1/images?limit=2&token=S&cursor=200%7C1744925337225")
    assert ("cursor", "200|1744925337225") in q and all(k != "token" for k, _ in q)


@pytest.mark.parametrize("url", [
    "https://image.civitai.com/xG1nkqKTMzGDvpLrqFT7WA/0b6d3c8e-2d1a-4f7e-9a0e-3b1c2a9f7e11/width=450/1.jpeg",
    "https://h.example/a/b://c/d",  # a second "://" inside the path is part of the path
    "https://h.example/a/b://c/d://e?x=1://y#z",
    "https://h.example/a//b/?q=1?r=2#f#g",  # "?" and "#" twice: the path ends at the first of either
    "https://h.example/a/b#f?not-a-query",
    "/a/b/c?q",  # already a path
    "https://h.example",
])
def test_path_segments_are_those_of_the_parsed_path(url):
    """The plain string splitting reads the same segments as the standard parser, odd URLs included."""
    from urllib.parse import urlsplit

    assert urls.path_segments(url) == [s for s in urlsplit(url).path.split("/") if s]
