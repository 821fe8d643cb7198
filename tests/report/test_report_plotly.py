"""The interactive report: plotly charts with plotly.js embedded, rendered by chromium with the network off."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from lvmharness.formats.graph_format import LAYER_TYPES
from lvmharness.report.charts import machine_line, memory_predicted_vs_measured, time_by_layer_type
from lvmharness.report.render import build_report
from lvmharness.store.records import make_record
from lvmharness.store.run_folder import RunStore

# Hand-written layer-type times (ms) per model and input side: every non-zero value is one bar segment.
LAYER_MS: dict[tuple[str, int], dict[str, float]] = {
    ("vit", 224): {"attention": 40.0, "mlp": 60.0, "norm": 5.0, "embedding": 3.0, "head": 0.5},
    ("vit", 448): {"attention": 260.0, "mlp": 250.0, "norm": 20.0, "embedding": 12.0, "head": 0.5},
    ("resnet", 224): {"conv": 80.0, "norm": 8.0, "head": 0.4, "other": 6.0},
    ("resnet", 448): {"conv": 330.0, "norm": 31.0, "head": 0.4, "other": 25.0},
}
SEGMENTS = sum(len(v) for v in LAYER_MS.values())  # 5 + 5 + 4 + 4 = 18 bar segments


def _record(store: RunStore, metric: str, alias: str, batch: int, size: int, values: dict[str, Any]) -> None:
    store.add(make_record(run_id=store.run_id, metric=metric, model=alias, alias=alias, family=alias, device="cpu",
                          dtype="fp32", batch_size=batch, img_size=size, values=values))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    store = RunStore(tmp_path / "results", "r1")
    store.write_env({"schema": 1, "cpu_model": "Test CPU 9000", "cpu_cores_available": 2, "cpu_logical": 4,
                     "ram_bytes": 24 * 2**30, "torch": "2.14.1", "timm": "1.0.0", "torch_num_threads": 2,
                     "peak_flops_per_s": {"cpu/fp32": 31.5e9}, "peak_bytes_per_s": {"cpu": 6.25e9},
                     "git_commit": "0123456789abcdef"})
    for batch, ms in ((1, 10.0), (2, 16.0), (4, 30.0)):
        _record(store, "latency", "vit", batch, 224, {"latency_ms_p50": ms, "throughput_img_s": batch / ms * 1e3})
    _record(store, "latency", "vit", 1, 448, {"latency_ms_p50": 55.0, "throughput_img_s": 1 / 55.0 * 1e3})
    for (alias, size), by_type in LAYER_MS.items():
        values = {f"layer_type_{t}_ms": by_type.get(t, 0.0) for t in LAYER_TYPES}
        values["layers_children_ms"] = sum(by_type.values())
        _record(store, "layer_times", alias, 1, size, values)
    return store.run_dir


def test_time_by_layer_type_holds_the_records_values(run_dir: Path) -> None:
    from lvmharness.store.loading import load_records

    fig = time_by_layer_type(load_records(run_dir))
    assert fig is not None
    got = {(trace.name, trace.xaxis): list(trace.y) for trace in fig.data}
    # resnet is panel 1 (x), vit panel 2 (x2); each trace is one layer type across the two sizes (224, 448).
    assert got[("conv", "x")] == [80.0, 330.0]
    assert got[("attention", "x2")] == [40.0, 260.0]
    assert got[("mlp", "x2")] == [60.0, 250.0]
    assert sum(len([y for y in ys if y]) for ys in got.values()) == SEGMENTS
    assert [t.name for t in fig.data if t.showlegend] == ["conv", "norm", "head", "other", "attention", "mlp",
                                                          "embedding"]  # each type once in the legend


def test_machine_line_is_for_people(run_dir: Path) -> None:
    import json

    env = json.loads((run_dir / "env.json").read_text())
    line = machine_line(env)
    assert line == ("CPU Test CPU 9000 (2 cores available of 4 logical, 24 GiB RAM); no GPU; torch 2.14.1, timm 1.0.0; "
                    "2 torch threads; peak compute cpu/fp32 31.5 GFLOP/s; measured copy bandwidth cpu "
                    "6.2 GB/s; git 0123456789ab")


def test_report_html_embeds_plotly_and_the_layer_chart(run_dir: Path, tmp_path: Path) -> None:
    files = build_report([run_dir], tmp_path / "report")
    text = files["html"].read_text(encoding="utf-8")
    assert "Time by layer type" in text and "id=\"chart-2\"" in text
    assert "<script src=" not in text  # nothing fetched: plotly.js is inline
    assert text.count("plotly.js v") >= 1 and len(text) > 3_000_000  # the library itself is inside
    assert "Machine: CPU Test CPU 9000" in text


@pytest.mark.browser
def test_report_renders_offline_in_chromium(run_dir: Path, tmp_path: Path) -> None:
    chromium = "/usr/bin/chromium"
    if not (os.path.exists(chromium) and shutil.which("chromium")):
        if os.environ.get("LVM_REQUIRE_BROWSER"):
            pytest.fail("chromium is required (LVM_REQUIRE_BROWSER is set) but /usr/bin/chromium is missing")
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    files = build_report([run_dir], tmp_path / "report")
    requested: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.on("request", lambda req: requested.append(req.url))
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(files["html"].as_uri())
        layer_chart = page.locator("#chart-2")
        expect(layer_chart.locator(".main-svg").first).to_be_visible(timeout=30_000)
        # Every non-zero layer-type time is a drawn bar segment.
        expect(layer_chart.locator(".barlayer .point")).to_have_count(SEGMENTS)
        expect(page.locator("#chart-0 .scatterlayer .trace")).to_have_count(2)  # latency and throughput panels
        expect(page.locator("#chart-1 .scatterlayer .trace")).to_have_count(1)
        shots = Path(os.environ.get("LVM_SCREENSHOTS", tmp_path))
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "report_offline.png"), full_page=True)
        browser.close()
    assert not errors, errors
    assert all(u.startswith(("file://", "data:")) for u in requested), requested


def test_memory_predicted_vs_measured_points() -> None:
    mib = 2**20
    rec = {"metric": "memory_predicted", "status": "ok", "alias": "vit", "device": "cpu", "dtype": "fp32",
           "phase": "train", "batch_size": 8, "img_size": 224,
           "values": {"predicted_peak_bytes": 103 * mib, "measured_peak_bytes": 100 * mib}}
    fig = memory_predicted_vs_measured([rec, {**rec, "status": "error"}])
    assert fig is not None
    points = fig.data[0]
    assert list(points.x) == [100.0] and list(points.y) == [103.0]
    assert "error +3.0%" in points.text[0]  # 103 / 100 - 1
    assert memory_predicted_vs_measured([{**rec, "metric": "memory_train"}]) is None
