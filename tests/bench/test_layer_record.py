"""``--lvm-layers``: a ``layer_times`` record beside the latency record, and its flat values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lvmharness.bench.layer_record import record_values


def test_record_values_of_a_hand_made_document() -> None:
    # Totals and by_type are copied through; the reference p50 becomes a float; contention comes from the profiled
    # steps (and the p50's window when only that was contended).
    doc: dict[str, Any] = {
        "totals": {"children_ms": 9.0, "ops_ms": 9.5, "model_own_ops_ms": 0.25, "outside_model_ms": 0.5,
                   "children_vs_p50": 0.9, "within_tolerance": True},
        "reference": {"p50_ms": 10, "contended": True,
                      "profiled_steps": {"contended": False, "cpu_share": 0.5, "other_load_cores": 1.5}},
        "by_type": {"attention": 4.0, "mlp": 5.0},
    }
    assert record_values(doc) == {
        "layers_children_ms": 9.0, "layers_ops_ms": 9.5, "layers_model_own_ms": 0.25, "layers_outside_model_ms": 0.5,
        "layers_reference_p50_ms": 10.0, "layers_children_vs_p50": 0.9, "layers_within_tolerance": True,
        "contended": True, "cpu_share": 0.5, "other_load_cores": 1.5,
        "layer_type_attention_ms": 4.0, "layer_type_mlp_ms": 5.0,
    }
    del doc["reference"]["profiled_steps"]
    assert "contended" not in record_values(doc)


def test_bench_layers_option_writes_a_layer_times_record(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benches/bench_latency.py", "--lvm-profile", "smoke", "--lvm-models",
         "smoke_vit", "--lvm-batch-sizes", "1", "--lvm-img-sizes", "32", "--lvm-budget-s", "0.2", "--lvm-layers",
         "--lvm-device", "cpu",
         "--lvm-out", str(tmp_path), "--lvm-run-id", "run", "-p", "no:cacheprovider", "-q"],
        cwd=root, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    from lvmharness.store.loading import load_records

    records = load_records(tmp_path / "run")
    latency = next(r for r in records if r["metric"] == "latency")
    layers = next(r for r in records if r["metric"] == "layer_times")
    assert layers["status"] == "ok" and layers["case_id"] == "layer_times[smoke_vit-cpu-fp32-b1-32]"
    # The children's sum is held against this very case's timed p50, and the ratio is theirs.
    v = layers["values"]
    assert v["layers_reference_p50_ms"] == latency["values"]["latency_ms_p50"]
    assert v["layers_children_vs_p50"] == pytest.approx(v["layers_children_ms"] / v["layers_reference_p50_ms"])
    assert v["layer_type_attention_ms"] > 0 and v["layer_type_mlp_ms"] > 0
    doc = json.loads((tmp_path / "run" / layers["provenance"]["layers_file"]).read_text())
    assert doc["format"] == "lvmharness.layers" and doc["totals"]["children_ms"] == v["layers_children_ms"]
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["peak_bytes_per_s"]["cpu"] > 0 and env["bandwidth_probes"]["cpu"]["rounds"] >= 5
    assert doc["peaks"]["bytes_per_s"] == env["peak_bytes_per_s"]["cpu"]
