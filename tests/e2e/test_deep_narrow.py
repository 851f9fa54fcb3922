"""`--deep` beyond levels and types: period windows prove by meeting, base models only narrow a gap.

One browsing level and one media type cannot be divided exhaustively. A `period` window listed Oldest
starts inside the gap (the simulator's clock is its newest upload); a base model's part is proven alone,
but images of no (or another) base model are in none of them, so what stays unproven is still a gap.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from conftest import assert_complete, cli, flags_list, mirrored_hashes

from crawler.normalise import parse_time
from crawler.simulator import SimConfig, SimThread
from crawler.stops import EXIT_FAILED, EXIT_OK

QUERY = {"browsingLevel": "1", "type": "image"}
BASES = {"SDXL 1.0", "Pony", "SD 1.5", "Flux.1 D", "Illustrious"}  # the simulator's, all in --deep-base-models


def _crawl(out: Path, api_base: str, cap: int, *extra: str) -> tuple[int, str, dict]:
    result = cli("crawl", "--out", str(out), "--deep", *extra,
                 *flags_list(api_base, browsing_level=1, type="image", depth_cap=cap), timeout=120)
    status = cli("status", "--out", str(out), "--json")
    assert status.returncode == 0, status.stderr
    return result.returncode, result.stderr, orjson.loads(status.stdout)


def test_a_month_window_that_meets_both_chains_proves_a_part_no_split_divides(tmp_path):
    # 485 items over 40 days, cap 200: Newest and Oldest leave 85 unlisted between them; the Month window
    # starts at item 106 (inside what Oldest listed) and reaches past Newest's edge.
    with SimThread(SimConfig(images=1000, seed=141, span_days=40, depth_cap=200)) as sim:
        code, err, status = _crawl(tmp_path, sim.api_base, 200)
        expected = sim.catalogue.expected(QUERY)
        windows = [e.query for e in sim.log.entries("api") if "period" in e.query]
    assert code == EXIT_OK, err[-2000:]
    assert "--deep proved the listing complete" in err.strip().splitlines()[-1]
    assert_complete(tmp_path, expected)
    assert status["gaps"] == [] and status["depth"]["proven"] == ["all"]
    assert {(w["period"], w["sort"]) for w in windows} == {(p, "Oldest") for p in ("Day", "Week", "Month")}
    assert not any("baseModels" in e.query for e in sim.log.entries("api"))  # proven before base models were needed


def test_base_models_narrow_a_gap_but_cannot_close_it(tmp_path):
    # 487 items over 540 days, cap 60: no window closes the gap (the Year window fills a middle stretch),
    # each base model's ~95 images are proven alone. Every image has a base model here, so the mirror is
    # whole -- but nothing lists "no base model", so the crawl cannot know that and must not claim it.
    # A name the API does not know (HTTP 400) leaves that part unproven; the proof goes on.
    names = [a for b in [*sorted(BASES), "Not A Model"] for a in ("--deep-base-models", b)]
    with SimThread(SimConfig(images=1000, seed=142, depth_cap=60)) as sim:
        code, err, status = _crawl(tmp_path, sim.api_base, 60, *names)
        expected = sim.catalogue.expected(QUERY)
        refused = [e for e in sim.log.entries("api") if e.status == 400]
    assert code == EXIT_FAILED, err[-2000:]
    assert "gaps-remain" in err.strip().splitlines()[-1] and "but images of base model" in err
    assert len(status["gaps"]) == 2 and len(refused) == 2  # below and above the Year window; Newest, Oldest
    for gap in status["gaps"]:
        assert set(gap["except_base_models"]) == BASES and gap["filters"] == QUERY
    assert_complete(tmp_path, expected)


def test_images_without_a_base_model_inside_a_gap_are_named_missing_not_hidden(tmp_path):
    with SimThread(SimConfig(images=1000, seed=142, depth_cap=60, null_base_model=0.3)) as sim:
        code, _err, status = _crawl(tmp_path, sim.api_base, 60)
        expected = sim.catalogue.expected(QUERY)
        items = {i["id"]: i for i in sim.catalogue.items}
    assert code == EXIT_FAILED and status["last_run"]["reason"] == "gaps-remain"
    ranges = [(parse_time(g["created_after"]), parse_time(g["created_before"])) for g in status["gaps"]]

    def in_gap(item: dict) -> bool:
        return any(low < parse_time(item["createdAt"]) < high for low, high in ranges)

    unseen = {k for k in expected if items[k]["baseModel"] is None and in_gap(items[k])}
    assert unseen, "the catalogue holds no image the gaps could hide: the test proves nothing"
    assert all(set(g["except_base_models"]) >= BASES for g in status["gaps"])
    # Exactly those are missing: every image with a base model, and every null one outside the gaps, is there.
    got = mirrored_hashes(tmp_path)
    assert set(expected) - set(got) == unseen
    assert_complete(tmp_path, {k: v for k, v in expected.items() if k not in unseen})
    text = cli("status", "--out", str(tmp_path))
    gap_lines = [line for line in text.stdout.splitlines() if line.strip().startswith("gap ")]
    assert len(gap_lines) == len(status["gaps"]) and all("except images of base model" in g for g in gap_lines), \
        text.stdout
