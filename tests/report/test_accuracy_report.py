"""The report's accuracy panels: top-1 against GMACs, params, batch-1 latency and training time, the Pareto front
drawn and the dominated models named; and the report of a real (tiny) ladder run in a real browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lvmharness.report.accuracy import accuracy_points, dominated_by, pareto_front
from lvmharness.report.render import build_report
from lvmharness.store.records import make_record

# Three models. By hand: on GMACs, a (1, 90) beats b (2, 85): b is dominated (more cost, less accuracy); c (3, 95)
# is the most accurate, so on the front. On training time the order flips for a and b: b is cheapest (10 s, 85%),
# a (30 s, 90%) buys accuracy, c (20 s, 95%) is better and cheaper than a, so a is the dominated one there.
MODELS = {"a": (1.0, 90.0, 30.0), "b": (2.0, 85.0, 10.0), "c": (3.0, 95.0, 20.0)}


def _records() -> list[dict[str, Any]]:
    out = []
    for alias, (gmacs, top1, train_s) in MODELS.items():
        out.append(make_record(
            run_id="r", metric="train_result", model=alias, alias=alias, family="resnet", device="cpu",
            dtype="fp32", batch_size=128, img_size=32, phase="train", options={"dataset": "fashion_mnist"},
            values={"top1": top1, "top5": 99.0, "params": int(gmacs * 1e6), "gmacs": gmacs, "train_s": train_s,
                    "latency_b1_ms_p50": gmacs}))
    return out


def test_the_front_and_the_dominated_models_per_panel() -> None:
    pts = accuracy_points(_records())
    assert {p[2] for p in pareto_front(pts["accuracy_vs_gmacs"])} == {"a@32", "c@32"}
    assert dominated_by(pts["accuracy_vs_gmacs"]) == {"b@32": "a@32"}
    assert dominated_by(pts["accuracy_vs_params"]) == {"b@32": "a@32"}  # params = GMACs x 1e6 here
    assert dominated_by(pts["accuracy_vs_train_time"]) == {"a@32": "c@32"}
    assert sorted(p[0] for p in pts["accuracy_vs_params"]) == [1.0, 2.0, 3.0]  # in millions


def test_the_page_draws_four_panels_and_names_the_dominated(tmp_path: Path) -> None:
    from lvmharness.store.run_folder import RunStore

    store = RunStore(tmp_path / "res", "r")
    for rec in _records():
        store.add(rec)
    store.close()
    files = build_report([tmp_path / "res" / "r"], tmp_path / "report")
    for name in ("accuracy_vs_gmacs", "accuracy_vs_params", "accuracy_vs_latency", "accuracy_vs_train_time"):
        assert files[name].stat().st_size > 1000
    page = files["html"].read_text()
    assert "<li>b@32 (by a@32)</li>" in page and "<li>a@32 (by c@32)</li>" in page
    assert "No data for this plot in these runs: needs train_result" not in page


@pytest.mark.browser
@pytest.mark.slow
def test_a_ladder_runs_report_in_a_real_browser(tmp_path: Path) -> None:
    import os
    import shutil

    from lvmharness.train.accuracy import Budget, run_ladder
    from tests.helpers.idx_files import write_fashion_mnist

    chromium = "/usr/bin/chromium"
    if not (os.path.exists(chromium) and shutil.which("chromium")):
        if os.environ.get("LVM_REQUIRE_BROWSER"):
            pytest.fail("chromium is required (LVM_REQUIRE_BROWSER is set) but /usr/bin/chromium is missing")
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    write_fashion_mnist(tmp_path / "data", train=60, test=30)
    res = run_ladder(["ladder_resnet_tiny", "ladder_convnext_tiny", "ladder_swin_tiny"],
                     budget=Budget(train_images=None, epochs=1, batch_size=10), results_dir=tmp_path / "res",
                     work_dir=tmp_path / "work", run_id="ladder", data_dir=tmp_path / "data", max_steps_per_epoch=2,
                     latency_budget_s=0.0, quiet=True, progress=lambda _: None)
    files = build_report([res.run_dir], tmp_path / "report")

    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium,
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(files["html"].as_uri())
        for title in ("Accuracy vs GMACs", "Accuracy vs params", "Accuracy vs latency", "Accuracy vs training time"):
            img = page.locator(f"img[alt='{title}']")
            expect(img).to_be_visible()
            img.scroll_into_view_if_needed()
            # decoded and drawn: a broken data URI has naturalWidth 0
            assert img.evaluate("e => e.complete && e.naturalWidth") > 300, title
        fronts = page.locator("p.front")
        expect(fronts).to_have_count(4)
        expect(page.locator("p.front[data-panel='accuracy_vs_gmacs']")).to_contain_text("ladder_")
        dominated = page.locator("p.dominated[data-panel='accuracy_vs_gmacs']")
        expect(dominated).to_be_visible()
        # three models on one panel: the front plus the dominated count is all three
        n_front = len(page.locator("p.front[data-panel='accuracy_vs_gmacs']").inner_text().split(":", 1)[1]
                      .strip(" .").split(", "))
        n_dom = int(dominated.inner_text().rsplit(":", 1)[1])
        assert n_front + n_dom == 3
        browser.close()
        assert not errors, errors
