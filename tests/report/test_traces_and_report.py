"""Traces that a real TensorBoard (with the pytorch_profiler plugin) serves, and the report of a smoke run."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lvmharness.commands.main import main
from lvmharness.report.accuracy import ACCURACY_PANELS
from lvmharness.store.loading import load_records

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("smoke")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benches/bench_latency.py", "benches/bench_flops.py",
         "benches/bench_memory.py", "-k", "smoke_vit", "--lvm-profile", "smoke", "--lvm-device", "cpu", "--lvm-trace",
         "--lvm-out", str(out), "--lvm-run-id", "run", "-p", "no:cacheprovider", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return out / "run"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read().decode())


@pytest.fixture
def tensorboard(smoke_run: Path) -> Iterator[str]:
    port = free_port()
    exe = Path(sys.executable).parent / "tensorboard"
    proc = subprocess.Popen([str(exe), "--logdir", str(smoke_run / "tb"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                runs = get_json(base + "/data/plugin/pytorch_profiler/runs")
                if runs["runs"] and not runs["loading"]:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("tensorboard did not serve the profiler runs: "
                                   + (proc.stdout.read()[-2000:] if proc.stdout else ""))
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.slow  # starts a TensorBoard server and waits for its profile plugin
def test_tensorboard_serves_the_traces_and_scalars(tensorboard: str, smoke_run: Path) -> None:
    api = tensorboard + "/data/plugin/pytorch_profiler"
    runs = get_json(api + "/runs")["runs"]
    run = "latency-smoke_vit-cpu-fp32-b1-32"
    assert run in runs and len(runs) == 3  # one per latency case of smoke_vit
    q = urllib.parse.quote
    views = get_json(f"{api}/views?run={q(run)}")
    assert {"Overview", "Operator"} <= set(views)
    (worker,) = get_json(f"{api}/workers?run={q(run)}&view=Overview")
    spans = get_json(f"{api}/spans?run={q(run)}&worker={q(worker)}")
    sel = f"run={q(run)}&worker={q(worker)}&span={q(spans[0])}"
    overview = get_json(f"{api}/overview?{sel}")
    assert overview["steps"]["rows"], "no profiled steps in the overview"
    ops = get_json(f"{api}/operation?{sel}&group_by=Operation")
    names = [row[0] for row in ops["host_total_time"]["rows"]]
    assert "aten::linear" in names or "aten::addmm" in names
    table = get_json(f"{api}/operation/table?{sel}&group_by=OperationAndInputShape")
    rows = table["data"] if isinstance(table, dict) else table
    assert rows and any("input_shape" in json.dumps(r) for r in rows[:5])  # shapes were recorded
    tags = get_json(tensorboard + "/data/plugin/scalars/tags")
    assert "latency/latency_ms_p50" in tags[run]


def test_report_writes_html_pngs_and_csv(smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(smoke_run), "-o", str(tmp_path)]) == 0
    html = (tmp_path / "report.html").read_text()
    for name in ("latency_vs_batch", "latency_vs_resolution", "memory_vs_batch", "memory_predicted_vs_measured",
                 "memory_breakdown"):
        png = tmp_path / f"{name}.png"
        assert png.stat().st_size > 5_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert html.count("<img alt=") == 5 and html.count("src='data:image/png;base64,") == 5  # self-contained
    # The exponent is fitted to clean batch-1 points only: on a busy machine the smoke run's records may be
    # contended, and then the chart says so instead of fitting them.
    clean_sizes = {r["img_size"] for r in load_records(smoke_run) if r["metric"] == "latency" and r["batch_size"] == 1
                   and r["status"] == "ok" and not r["values"].get("contended")}
    if len(clean_sizes) >= 2:
        assert "latency ∝ pixels<sup>" in html
    else:
        assert "latency ∝ pixels<sup>" not in html and "contended point" in html
    # The memory bench's predictions: each case measured by MemTracker, within the 3% band, and the exponent.
    assert "<td>NO</td>" not in html and html.count("<td>yes</td>") == 6
    assert "activations ∝ pixels<sup>" in html
    # No training records in a smoke bench: each of the four accuracy panels (vs GMACs, params, latency, training
    # time) says so instead of failing.
    assert html.count("No data for this plot") == len(ACCURACY_PANELS) == 4 and "train_result records" in html
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == len(load_records(smoke_run))
    lat = next(r for r in rows if r["case_id"] == "latency[smoke_vit-cpu-fp32-b1-32]")
    assert float(lat["param_count"]) == 0.179 and float(lat["gmacs"]) == 0.002
    assert float(lat["infer_samples_per_sec"]) > 0


def test_report_of_an_empty_run_says_so(tmp_path: Path) -> None:
    run = tmp_path / "empty"
    run.mkdir()
    (run / "results.json").write_text("[]")
    assert main(["report", str(run), "-o", str(tmp_path / "out")]) == 0
    html = (tmp_path / "out" / "report.html").read_text()
    # Five cost plots and the four accuracy panels, none with data.
    assert html.count("No data for this plot") == 5 + len(ACCURACY_PANELS) and "No records." in html
