"""The options of issue 14 as `CrawlConfig` reads them: --site, the download allow-list, tags, video sizes."""

from __future__ import annotations

import pytest

from crawler.config import settings as config
from crawler.config.options import ConfigError


def _cfg(**values):  # type: ignore[no-untyped-def]
    return config.build("/tmp/never", values, None, {})


@pytest.mark.parametrize("site", ["com", "red", "green"])
def test_site_names_the_api_root_and_api_base_wins(site):
    assert _cfg(site=site).api_base == f"https://civitai.{site}/api/v1"
    assert _cfg(site=site, api_base="http://127.0.0.1:9/api/v1").api_base == "http://127.0.0.1:9/api/v1"
    assert _cfg().api_base == "https://civitai.com/api/v1"


def test_the_default_allow_list_is_civitai_image_hosts_only():
    hosts = _cfg(site="red").allowed_hosts
    assert {"image.civitai.com", "image.civitai.red", "image-b2.civitai.com", "image.civitai.green"} <= hosts
    assert "civitai.red" not in hosts and "civitai.com" not in _cfg().allowed_hosts
    assert "127.0.0.1" in _cfg(api_base="http://127.0.0.1:9/api/v1").allowed_hosts  # a proxy or the simulator


def test_tag_ids_are_one_comma_separated_parameter_and_with_tags_is_sent_only_when_asked():
    params = _cfg(tag_id=["4", "111"], with_tags=True).api_params()
    assert ("tags", "4,111") in params and ("withTags", "true") in params
    plain = _cfg().api_params()
    assert all(k not in ("tags", "withTags") for k, _ in plain)
    # --with-tags changes what is kept, not which images: a mirror resumes across it; --tag-id does not.
    assert _cfg(with_tags=True).query_identity() == _cfg().query_identity()
    assert _cfg(tag_id=["4"]).query_identity() != _cfg().query_identity()
    with pytest.raises(ConfigError, match="--tag-id"):
        _cfg(tag_id=["anime"])


def test_video_sizes_contradict_like_image_sizes():
    with pytest.raises(ConfigError, match="--video-width and --video-original"):
        _cfg(video_width=320, video_original=True)
    assert _cfg(video_width=320, original=True).video_width == 320
