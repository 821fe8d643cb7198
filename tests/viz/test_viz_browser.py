"""The architecture page in a real browser: Debian's chromium, headless, driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.browser import serve_page

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with serve_page(tmp_path / "graphs") as url:
        yield url


def test_choose_vit_expand_a_block_search_attn(server: str, page: object, tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(server + "/")
    page.fill("#model", "vit")
    page.click("#show")
    expect(page.locator("#title")).to_contain_text("vit_base_patch16_224 at 224×224, batch 1, fp32", timeout=60_000)
    expect(page.locator("#status")).to_contain_text("vit_base_patch16_224-224-b1-fp32")
    expect(page.locator("#totals")).to_contain_text("86.57 M")
    expect(page.locator("#totals")).to_contain_text("17.564")

    # blocks -> the folded group of twelve -> block 0
    page.click("tr[data-path='blocks'] button.toggle")
    group = page.locator("tr[data-path='group:blocks.0']")
    expect(group).to_contain_text("blocks.0–11 ×12")
    group.locator("button.toggle").click()
    page.click("tr[data-path='blocks.0'] button.toggle")
    attn = page.locator("tr[data-path='blocks.0.attn']")
    expect(attn).to_contain_text("1×197×768")
    expect(attn.locator("td.params")).to_have_attribute("title", "2,362,368")
    page.screenshot(path=str(tmp_path / "vit_block0_expanded.png"))

    page.fill("#search", "attn")
    expect(page.locator("#matches")).to_have_text("24 matches")  # attn + attn_drop in 12 blocks
    rows = page.locator("tbody tr.match")
    expect(rows).to_have_count(24)
    qkv_hidden = page.locator("tr[data-path='blocks.5.attn.qkv']")
    expect(qkv_hidden).to_have_count(0)
    expect(page.locator("tr[data-path='blocks.11.attn']")).to_contain_text("1×197×768")
    page.screenshot(path=str(tmp_path / "vit_search_attn.png"))

    # Collapse all, then expand to depth 1: only the model's direct children are visible.
    page.fill("#search", "")
    page.click("#collapse-all")
    expect(page.locator("tbody tr")).to_have_count(1)
    page.fill("#depth", "1")
    page.click("#expand-depth")
    expect(page.locator("tr[data-path='head']")).to_contain_text("1×1000")
    assert (tmp_path / "vit_block0_expanded.png").stat().st_size > 10_000


def test_bad_input_shows_the_reason_and_suggestions(server: str, page: object) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(server + "/")
    page.fill("#model", "vitt")
    page.click("#show")
    expect(page.locator("#status")).to_contain_text("unknown model 'vitt'", timeout=60_000)
    page.locator("#status button", has_text="vit_tiny").click()
    expect(page.locator("#title")).to_contain_text("vit_tiny_patch16_224", timeout=60_000)
    page.fill("#model", "<img src=x onerror=alert(1)>")
    page.click("#show")
    expect(page.locator("#status")).to_contain_text("model must be")
    assert page.locator("#status img").count() == 0  # shown as text, never as HTML


def test_memory_panel_predicts_peak_breakdown_batch_and_layers(server: str, page: object, tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(server + "/")
    page.fill("#model", "smoke_resnet")
    page.fill("#batch", "2")
    page.click("#show")
    expect(page.locator("#title")).to_contain_text("resnet18", timeout=60_000)
    page.select_option("#mem-mode", "train")
    page.fill("#mem-budget", "0.0234375")  # 24 MiB
    page.click("#mem-predict")
    expect(page.locator("#mem-peak")).to_contain_text("Predicted peak of one train step (batch 2, 64 px, fp32)",
                                                      timeout=120_000)
    expect(page.locator("#mem-batch")).to_contain_text("Largest batch for 0.0234375 GiB:")
    expect(page.locator("#mem-bar .seg")).to_have_count(6)
    expect(page.locator("#mem-legend")).to_contain_text("optimizer state")
    # The stem convolution keeps the image batch for backward: 2 x 3 x 64 x 64 x 4 bytes = 96.00 KiB.
    row = page.locator("#mem-layers tbody tr").filter(has=page.get_by_role("button", name="conv1", exact=True))
    expect(row).to_contain_text("96.00 KiB")
    row.get_by_role("button").click()
    expect(page.locator("#search")).to_have_value("conv1")
    page.screenshot(path=str(tmp_path / "memory_panel.png"))
