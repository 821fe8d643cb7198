"""The history site in a real browser: Debian's chromium, headless, driven by Playwright, opened from a file:// URL
with every request that leaves the file refused (the page must work offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lvmharness.commands.main import main
from lvmharness.history.store import History
from tests.helpers.history_helpers import FP_A, FP_B, make_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """16 commits: a 10 % slowdown from commit 8, a contended run at 4, another machine from commit 12."""
    hist = History(tmp_path / "hist", create=True)
    for i in range(16):
        lat = 10.0 * (1.10 if i >= 8 else 1.0) * (0.7 if i >= 12 else 1.0)
        run = make_run(tmp_path / "runs", f"r{i:02d}", latency_ms=lat, seed=i, contended=i == 4,
                       fingerprint=FP_B if i >= 12 else FP_A)
        hist.add(run, commit=f"c{i:02d}", branch="main", repo=tmp_path)
    assert main(["history", "--history", str(hist.root), "site", "-o", str(tmp_path / "site")]) == 0
    return tmp_path / "site"


def test_site_draws_segments_change_points_and_contended_points(site: Path, page: object) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto((site / "index.html").as_uri())
    # three tracks (latency p50, MACs, params), each a plotly chart that rendered its SVG
    expect(page.locator("section.track .main-svg").first).to_be_visible(timeout=60_000)
    assert page.locator("section.track").count() == 3
    assert page.locator("section.track .js-plotly-plot").count() == 3
    lat = page.locator("section.track", has=page.locator("#t-latency-tiny-cpu-fp32-b1-32--latency-ms-p50"))
    assert lat.get_attribute("data-segments") == "2"  # the machine change opened a second segment
    assert lat.get_attribute("data-alerts") == "1"
    # the open regression is listed with its commit, and its annotation is drawn on the chart
    rows = page.locator("#open-regressions tr.open-regression")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("c08")
    expect(lat.locator(".annotation-text", has_text="regression +10")).to_have_count(1)
    expect(lat.locator(".annotation-text", has_text="segment 1")).to_have_count(1)
    # the contended point is its own trace, drawn with open crosses
    legend = lat.locator(".legendtext")
    expect(legend.filter(has_text="contended (excluded)")).to_have_count(1)
    data = json.loads(page.locator("#history-data").text_content() or "{}")
    assert [a["commit"] for a in data["open_regressions"]] == ["c08"]
    # charts are drawn as they near the viewport; lvmDrawAll draws the rest (all three are near here already)
    page.evaluate("window.lvmDrawAll()")
    assert page.locator("section.track[data-drawn] .js-plotly-plot").count() == 3
    page.screenshot(path=str(site / "page.png"), full_page=True)
    assert (site / "page.png").stat().st_size > 10_000
    summary = (site / "summary.md").read_text()
    assert "**1 open regression(s)**" in summary and "`c08`" in summary
