"""crawler.urls over every URL form: width rewriting, keys from URLs, the allow-list and redaction.

tests/unit/bottom/test_urls.py holds the worked examples; these state the rules for any URL (hypothesis).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from crawler import urls

# 2 shared cores under load: no per-example deadline, no slow-generation health check.
LOADED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

UUID = "0b6d3c8e-2d1a-4f7e-9a0e-3b1c2a9f7e11"
H = f"https://image.civitai.com/xG1nkqKTMzGDvpLrqFT7WA/{UUID}"

_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1, max_size=12)
_size = st.sampled_from(["width=450", "width=1024", "original=true", "original=false", "height=300"])
_other = st.sampled_from(["anim=false", "quality=90", "optimized=true", "transcode=true", "blur=0"])


@st.composite
def image_urls(draw):
    """`{scheme}://{host}/{hash1}/{uuid}/{options}/{name}[?query]` with any mix of size and other options."""
    host = draw(st.sampled_from(sorted(urls.CIVITAI_IMAGE_HOSTS) + ["127.0.0.1:8080"]))
    scheme = draw(st.sampled_from(["https", "http"]))
    uuid = str(draw(st.uuids()))
    options = draw(st.lists(st.one_of(_size, _other), min_size=1, max_size=5, unique=True))
    name = draw(st.one_of(st.integers(0, 10**12).map(str), _word)) + draw(st.sampled_from([".jpeg", ".png", ".mp4", ""]))
    query = draw(st.sampled_from(["", "?x=1", "?a=b&c=d"]))
    return f"{scheme}://{host}/{draw(_word)}/{uuid}/{','.join(options)}/{name}{query}", options


def _options(url: str) -> list[str]:
    return urlsplit(url).path.split("/")[-2].split(",")


@LOADED
@given(image_urls(), st.integers(1, 4096))
def test_width_is_the_only_size_and_everything_else_is_kept(case, width):
    url, options = case
    got = urls.rewrite_size(url, width=width)
    before, after = urlsplit(url), urlsplit(got)
    assert _options(got)[0] == f"width={width}"
    assert [o for o in _options(got) if o.startswith(("width=", "height=", "original="))] == [f"width={width}"]
    assert _options(got)[1:] == [o for o in options if not o.startswith(("width=", "height=", "original="))]
    assert (after.scheme, after.netloc, after.query) == (before.scheme, before.netloc, before.query)
    assert after.path.split("/")[:-2] == before.path.split("/")[:-2]  # hash1 and uuid
    assert after.path.split("/")[-1] == before.path.split("/")[-1]  # the file name
    assert urls.rewrite_size(got, width=width) == got  # idempotent
    assert urls.uuid_of(got) == urls.uuid_of(url)


@LOADED
@given(image_urls())
def test_original_clears_every_size(case):
    url, options = case
    got = urls.rewrite_size(url, original=True)
    assert _options(got) == ["original=true", *[o for o in options if not o.startswith(("width=", "height=", "original="))]]


@LOADED
@given(image_urls())
def test_no_size_asked_returns_the_url_itself(case):
    url, _ = case
    assert urls.rewrite_size(url) == url


def test_original_wins_over_a_width_given_together():
    assert _options(urls.rewrite_size(f"{H}/width=450/1.jpeg", width=96, original=True)) == ["original=true"]


def test_rewrite_drops_a_fragment_and_empty_options():
    assert urls.rewrite_size(f"{H}/,width=450,,anim=false/1.jpeg#frag", width=8) == f"{H}/width=8,anim=false/1.jpeg"


@pytest.mark.parametrize("url", ["https://image.civitai.com/a/b/c.jpeg", "https://image.civitai.com/", "not a url"])
def test_rewrite_refuses_paths_without_the_four_segments(url):
    with pytest.raises(urls.BadImageUrl, match=r"^image URL path has fewer than 4 segments$"):
        urls.rewrite_size(url, width=10)


@LOADED
@given(image_urls())
def test_uuid_of_reads_the_segment_after_hash1(case):
    url, _ = case
    assert urls.uuid_of(url) == urlsplit(url).path.split("/")[2]


@pytest.mark.parametrize(("url", "uuid"), [
    (f"{H}/width=1/a.jpeg", UUID),
    (f"{H.upper().replace('HTTPS', 'https')}/width=1/a.jpeg", UUID),  # case folded
    (f"{H}/width=1/a.jpeg?token=x#f", UUID),
    (f"{H}/width=1/a.jpeg?next=/a/b/c?d=/e/f", UUID),  # slashes in the query are not path segments
    (f"{H}/width=1/a.jpeg#/x/y#/z", UUID),  # nor in the fragment
    (f"xG1nkqKTMzGDvpLrqFT7WA/{UUID}/width=1/a.jpeg", UUID),  # no scheme: a bare path
    (f"https://image.civitai.com/{UUID}/width=1/a.jpeg", None),  # no hash1: uuid is not 3rd from the end
    ("https://image.civitai.com/h/not-a-uuid/width=1/a.jpeg", None),
    (f"https://image.civitai.com/h/{UUID}x/width=1/a.jpeg", None),
    ("", None),
])
def test_uuid_of_every_form(url, uuid):
    assert urls.uuid_of(url) == uuid


@pytest.mark.parametrize(("url", "image_id"), [
    (f"{H}/width=1/0.jpeg", 0),
    (f"{H}/width=1/9173928", 9173928),  # no extension
    (f"{H}/width=1/9173928.tar.gz", 9173928),
    (f"{H}/width=1/123456789012345678.jpeg", 123456789012345678),  # 18 digits
    (f"{H}/width=1/1234567890123456789.jpeg", None),  # 19 digits: not an id we would store
    (f"{H}/width=1/12a.jpeg", None),
    (f"{H}/width=1/-5.jpeg", None),
    ("https://image.civitai.com", None),
    ("http://[::1/x/1.jpeg", None),  # unparseable
])
def test_id_from_filename(url, image_id):
    assert urls.id_from_filename(url) == image_id


def test_host_of_is_lowercase_and_empty_when_unparseable():
    assert urls.host_of("https://IMAGE.Civitai.COM:443/a") == "image.civitai.com"
    assert urls.host_of("http://[::1") == ""
    assert urls.host_of("/relative/path") == ""


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://IMAGE.CIVITAI.COM/a/b/c/1.jpeg", True),
    ("http://image.civitai.com:8443/a/b/c/1.jpeg", True),
    ("HTTPS://image.civitai.com/a", True),  # the scheme is case-insensitive too
    ("https://imagecache.civitai.com/a", False),  # not on this allow-list
    ("https://image.civitai.com@evil.example/a", False),
    ("https://evil.example#@image.civitai.com/a", False),
    ("https://evil.example/?@image.civitai.com", False),
    ("//image.civitai.com/a", False),  # no scheme
    ("javascript://image.civitai.com/a", False),
    ("http://[::1/a", False),
    ("https://:@image.civitai.com/a", False),
    ("http://image.civitai.com\\@evil.example/x", False),  # aiohttp's parser refuses it: so do we
    ("https://@image.civitai.com/a", True),  # an empty user part: the URL asked is https://image.civitai.com/a
])
def test_allow_list(url, allowed):
    assert urls.is_allowed(url, frozenset({"image.civitai.com"})) is allowed


def test_allow_list_judges_the_url_aiohttp_asks():
    """The parsed URL a downloader hands on to aiohttp is judged as its text is; IDNA hosts either way."""
    hosts = frozenset({"image.civitai.com", "bücher.example"})
    for text in ("https://IMAGE.civitai.com/a/1.jpeg", "http://bücher.example/a", "http://xn--bcher-kva.example/a"):
        assert urls.is_allowed(URL(text), hosts) and urls.is_allowed(text, hosts)
    assert not urls.is_allowed(URL("https://evil.example/a"), hosts)


secrets = st.sampled_from(["token", "TOKEN", "api_key", "ApiKey", "key"])
plain = st.sampled_from(["limit", "cursor", "sort", "nsfw", "keys", "tokenizer"])
values = st.text(alphabet="abcXYZ0189|-_.", min_size=1, max_size=10)


@LOADED
@given(st.lists(st.tuples(st.one_of(secrets, plain), values), min_size=1, max_size=6))
def test_redact_hides_every_secret_and_keeps_the_rest(params):
    url = "https://civitai.com/api/v1/images?" + "&".join(f"{k}={v}" for k, v in params)
    got = parse_qsl(urlsplit(urls.redact(url)).query, keep_blank_values=True)
    expect = [(k, "REDACTED" if k.lower() in ("token", "api_key", "apikey", "key") else v) for k, v in params]
    assert got == expect
    assert urls.query_of(url) == [(k, v) for k, v in params if k.lower() not in ("token", "api_key", "apikey", "key")]


def test_blank_values_are_kept():
    url = "https://civitai.com/api/v1/images?cursor=&token=&limit=2"
    assert urls.query_of(url) == [("cursor", ""), ("limit", "2")]
    assert urls.redact(url) == "https://civitai.com/api/v1/images?cursor=&token=REDACTED&limit=2"


def test_redact_leaves_a_url_without_query_alone_and_never_raises():
    assert urls.redact("https://civitai.com/api/v1/images#x") == "https://civitai.com/api/v1/images#x"
    assert urls.redact("http://[::1/?token=S") == "<unparseable url>"


B2 = f"https://image-b2.civitai.com/file/civitai-media-cache/{UUID}"


@pytest.mark.parametrize(("url", "width", "original", "want"), [
    # image-b2 with an options segment: rewritten like image.civitai.com
    (f"{B2}/original=true,quality=100/12.mp4", 450, False, f"{B2}/width=450,quality=100/12.mp4"),
    (f"{B2}/width=1080,transcode=true/12.mp4", None, True, f"{B2}/original=true,transcode=true/12.mp4"),
    # the options seen in 2026 recordings
    (f"{H}/transcode=true,width=1080/12.Mp4", 320, False, f"{H}/width=320,transcode=true/12.Mp4"),
    (f"{H}/anim=false,width=450,optimized=true/12.jpeg", 96, False, f"{H}/width=96,anim=false,optimized=true/12.jpeg"),
    (f"{H}/width=832/ComfyUI%2012%20(1).png", None, True, f"{H}/original=true/ComfyUI%2012%20(1).png"),
])
def test_recognised_option_segments_are_rewritten(url, width, original, want):
    assert urls.rewrite_size(url, width=width, original=original) == want


@pytest.mark.parametrize("url", [
    f"{B2}/{UUID}.mp4",  # bare image-b2 media: the uuid folder is not an options segment (issue 14's 404)
    f"{B2}/12.jpeg",
    f"{H}/frobnicate=1,width=450/12.jpeg",  # an option we do not know
    f"{H}/width=450/extra/12.jpeg",  # a deeper path than the form
    "https://image.civitai.com/xG1nkqKTMzGDvpLrqFT7WA/not-a-uuid/width=450/12.jpeg",
])
def test_unrecognised_forms_are_refused_rather_than_guessed(url):
    with pytest.raises(urls.BadImageUrl):
        urls.rewrite_size(url, width=450)
    with pytest.raises(urls.BadImageUrl):
        urls.rewrite_size(url, original=True)
    assert urls.rewrite_size(url) == url  # nothing asked: nothing to refuse


def test_uuid_of_reads_image_b2_media_paths():
    assert urls.uuid_of(f"{B2}/{UUID}.mp4") == UUID
    assert urls.uuid_of(f"{B2}/original=true/12.mp4") == UUID


def test_default_image_hosts_cover_the_three_sites_and_no_site_itself():
    for site in ("com", "red", "green"):
        assert {f"image.civitai.{site}", f"image-b2.civitai.{site}"} <= urls.CIVITAI_IMAGE_HOSTS
    assert not urls.CIVITAI_IMAGE_HOSTS & urls.CIVITAI_SITE_HOSTS
