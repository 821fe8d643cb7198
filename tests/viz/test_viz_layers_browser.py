"""Measured time per layer on the architecture page, in headless chromium (Playwright)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lvmharness.commands.main import main
from tests.helpers.browser import serve_page

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A graphs folder holding smoke_vit's graph and its measured time per layer (what `lvm layers -o` writes)."""
    d = tmp_path_factory.mktemp("page") / "graphs"
    assert main(["layers", "smoke_vit", "--steps", "3", "--warmup", "1", "-o", str(d)]) == 0
    return d


@pytest.fixture
def server(graphs: Path) -> Iterator[str]:
    with serve_page(graphs, "--allow-measure") as url:
        yield url


def _screenshot(page: object, tmp_path: Path, name: str) -> Path:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    folder = Path(os.environ.get("LVM_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def test_measured_times_columns_sorting_and_roofline(server: str, page: object, tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(server + "/?model=smoke_vit&img_size=32")
    expect(page.locator("#title")).to_contain_text("vit_tiny_patch16_224 at 32×32", timeout=60_000)
    header = page.locator("#tree th[data-sort='ms']")
    expect(header).to_be_visible()
    expect(page.locator("#measured-line")).to_contain_text("Measured on cpu (inference")
    expect(page.locator("#measured-line")).to_contain_text("attention")
    root_time = page.locator("tr[data-path=''] td.time")
    expect(root_time).not_to_have_text("")
    assert float(root_time.inner_text()) > 0

    # Open the model and the blocks; sort by time, largest first: the time column then falls row by row.
    page.click("tr[data-path='blocks'] button.toggle")
    page.click("tr[data-path='group:blocks.0'] button.toggle")
    header.click()
    expect(header).to_have_attribute("aria-sort", "descending")
    top_level = page.locator("tbody tr").evaluate_all(
        "rows => rows.filter(r => r.querySelector('td.layer').style.paddingLeft === '26px')"
        ".map(r => parseFloat(r.querySelector('td.time').textContent || '0'))")
    assert len(top_level) >= 5 and top_level == sorted(top_level, reverse=True)
    assert top_level[0] > 0
    page.locator("#tree th[data-sort='layer']").click()
    expect(page.locator("#tree th[data-sort='layer']")).to_have_attribute("aria-sort", "ascending")

    # The roofline: one dot per leaf with multiply-adds (convs, linears, attention's own SDPA), under a red roof.
    dots = page.locator("#roofline-svg circle")
    expect(dots.first).to_be_visible()
    assert dots.count() >= 10  # smoke_vit: patch conv, 2 blocks × (qkv, proj, fc1, fc2, sdpa), head
    expect(page.locator("#roofline-svg polyline.roof")).to_have_count(1)
    expect(page.locator("#roofline-note")).to_contain_text("ridge")
    shot = _screenshot(page, tmp_path, "layers_page_smoke_vit.png")
    assert shot.is_file()


def test_measure_button_times_a_model_on_the_cpu(server: str, page: object, tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(server + "/?model=smoke_resnet")
    expect(page.locator("#title")).to_contain_text("resnet18 at 64×64", timeout=60_000)
    expect(page.locator("#measured-line")).to_contain_text("press Measure")
    expect(page.locator("#tree th[data-sort='ms']")).to_be_hidden()
    page.click("#measure")
    expect(page.locator("#status")).to_contain_text("Measuring time per layer")
    expect(page.locator("#status")).to_contain_text("Measured smoke_resnet-64-b1-fp32", timeout=120_000)
    expect(page.locator("#tree th[data-sort='ms']")).to_be_visible()
    expect(page.locator("#measured-line")).to_contain_text("conv")
    assert float(page.locator("tr[data-path=''] td.time").inner_text()) > 0


def test_the_page_opens_with_the_default_model(tmp_path: Path, page: object) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    with serve_page(tmp_path / "empty") as url:
        page.goto(url + "/")
        expect(page.locator("#status")).to_contain_text("Loading vit", timeout=10_000)  # says it is generating
        expect(page.locator("#title")).to_contain_text("vit_base_patch16_224 at 224×224", timeout=120_000)
        expect(page.locator("#measured-line")).to_contain_text("lvm layers")  # no measure button without the flag
        expect(page.locator("#measure")).to_be_hidden()
