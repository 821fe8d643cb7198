"""Contended records in the report's charts: drawn apart (hollow grey), in no line, fit or Pareto front, counted on
the chart. Checked on what each figure drew (matplotlib artists read back, plotly traces), not on the pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lvmharness.report.accuracy import plot_accuracy
from lvmharness.report.busy import note
from lvmharness.report.charts import latency_and_throughput_vs_batch, latency_vs_resolution
from lvmharness.report.plots import Plots, plot_latency_vs_batch, plot_latency_vs_resolution
from lvmharness.report.render import build_report
from lvmharness.store.loading import load_records
from lvmharness.store.records import make_record
from lvmharness.store.run_folder import RunStore

BUSY = {"contended": True, "cpu_share": 0.4, "other_load_cores": 1.6}


def _add(store: RunStore, metric: str, alias: str, batch: int, size: int, values: dict[str, Any]) -> None:
    store.add(make_record(run_id=store.run_id, metric=metric, model=alias, alias=alias, family="resnet",
                          device="cpu", dtype="fp32", batch_size=batch, img_size=size, values=values))


def _latency(store: RunStore, alias: str, batch: int, size: int, ms: float, busy: bool = False) -> None:
    values = {"latency_ms_p50": ms, "throughput_img_s": batch / ms * 1e3, **(BUSY if busy else {"contended": False})}
    _add(store, "latency", alias, batch, size, values)


@pytest.fixture
def records(tmp_path: Path) -> list[dict[str, Any]]:
    store = RunStore(tmp_path / "results", "busy")
    store.write_env({"schema": 1, "cpu_model": "Test CPU", "cpu_cores_available": 2, "torch": "2.14.1",
                     "timm": "1.0.0"})
    # The run of the report defect: batch 1 taken while the machine was busy (348 ms), batch 2 clean (130 ms).
    _latency(store, "smoke_resnet", 1, 64, 348.0, busy=True)
    _latency(store, "smoke_resnet", 2, 64, 130.0)
    _latency(store, "smoke_resnet", 4, 64, 250.0)
    # Batch 1 over sizes: the clean points are exactly 40 ms x (side/32)^2, i.e. latency ∝ pixels^1.
    for size in (32, 96, 128):
        _latency(store, "smoke_resnet", 1, size, 40.0 * (size / 32) ** 2)
    # Accuracy vs latency: "b" would dominate "a" were its contended 5 ms latency believed.
    _latency(store, "a", 1, 32, 50.0)
    _latency(store, "b", 1, 32, 5.0, busy=True)
    _add(store, "train_result", "a", 1, 32, {"top1": 70.0, "gmacs": 1.0})
    _add(store, "train_result", "b", 1, 32, {"top1": 90.0, "gmacs": 2.0})
    return load_records(store.run_dir)


def _series(drawn: dict[str, Any], label_start: str) -> list[dict[str, Any]]:
    return [s for s in drawn["series"] if s["label"].startswith(label_start)]


def test_latency_vs_batch_draws_contended_points_apart(records: list[dict[str, Any]], tmp_path: Path) -> None:
    plots = Plots(tmp_path)
    assert plot_latency_vs_batch(records, plots) == "latency_vs_batch"
    drawn = plots.drawn["latency_vs_batch"]
    (line,) = _series(drawn, "smoke_resnet cpu fp32 64px")
    assert line["line"] and line["x"] == [2.0, 4.0] and line["y"] == [130.0, 250.0]  # clean points only
    (busy,) = _series(drawn, "contended")
    assert busy["hollow"] and not busy["line"] and (348.0 in busy["y"]) and 1.0 in busy["x"]
    assert note(len(busy["x"])) in drawn["texts"]
    # No line anywhere passes through a contended point.
    assert all(348.0 not in s["y"] for s in drawn["series"] if s["line"])


def test_latency_vs_resolution_fits_clean_points_only(records: list[dict[str, Any]], tmp_path: Path) -> None:
    plots = Plots(tmp_path)
    name, exps = plot_latency_vs_resolution(records, plots)
    assert name == "latency_vs_resolution"
    # The clean points are 40 ms x (pixels / 32²): exponent exactly 1. The contended 64 px point (348 ms, where
    # the clean law says 160) would have pulled the fit elsewhere.
    assert exps["smoke_resnet cpu fp32"] == pytest.approx(1.0)
    drawn = plots.drawn["latency_vs_resolution"]
    (line,) = _series(drawn, "smoke_resnet cpu fp32")
    assert line["x"] == [32.0, 96.0, 128.0]
    (busy,) = _series(drawn, "contended")
    assert busy["hollow"] and busy["x"] == [64.0] and busy["y"] == [348.0]
    assert any("1 contended point" in t for t in drawn["texts"])


def test_pareto_front_leaves_out_a_contended_latency(records: list[dict[str, Any]], tmp_path: Path) -> None:
    plots = Plots(tmp_path)
    assert "accuracy_vs_latency" in plot_accuracy(records, plots)
    drawn = plots.drawn["accuracy_vs_latency"]
    (front,) = _series(drawn, "Pareto front")
    assert front["x"] == [50.0] and front["y"] == [70.0]  # "a" alone: "b"'s 5 ms was measured on a busy machine
    (busy,) = _series(drawn, "contended")
    assert busy["hollow"] and busy["x"] == [5.0] and busy["y"] == [90.0]
    # GMACs are counted, not timed: both models stay on that chart's front.
    assert "accuracy_vs_gmacs" in plots.drawn
    assert not _series(plots.drawn["accuracy_vs_gmacs"], "contended")


def test_interactive_charts_draw_contended_points_apart(records: list[dict[str, Any]]) -> None:
    fig = latency_and_throughput_vs_batch(records)
    assert fig is not None
    lines = [t for t in fig.data if t.mode == "lines+markers" and t.name.startswith("smoke_resnet cpu fp32 64px")]
    assert lines and all(list(t.x) == [2, 4] for t in lines)  # latency and throughput panels: clean points only
    busy = [t for t in fig.data if t.mode == "markers"]
    # One contended point (b1 at 64 px; "b" has one batch size, no series), once per panel.
    assert len(busy) == 2 and all(t.marker.symbol == "circle-open" for t in busy)
    assert list(busy[0].y) == [348.0] and list(busy[0].x) == [1] and note(1) in fig.layout.title.text
    res = latency_vs_resolution(records)
    assert res is not None
    (line,) = [t for t in res.data if t.name.startswith("smoke_resnet cpu fp32:")]
    assert list(line.x) == [32, 96, 128] and "pixels^1.00" in line.name
    (busy_res,) = [t for t in res.data if t.mode == "markers"]
    assert list(busy_res.x) == [64] and busy_res.marker.symbol == "circle-open"
    assert "1 contended point" in res.layout.title.text


def test_report_page_says_the_count_on_the_charts(records: list[dict[str, Any]], tmp_path: Path) -> None:
    out = build_report([tmp_path / "results" / "busy"], tmp_path / "report")
    page = out["html"].read_text()
    assert "contended point" in page and "Measured on a busy machine (2 of" in page
