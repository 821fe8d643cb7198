"""The benches end to end, as a user runs them: a pytest subprocess on the smoke profile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from lvmharness.store import keys
from lvmharness.store.loading import load_records
from lvmharness.store.record_schema import record_schema
from tests.helpers import runner

ROOT = Path(__file__).resolve().parents[2]


def run_pytest(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return runner.run_pytest("benches/", *args, timeout=timeout)


def only_run(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def test_smoke_vit_bench_writes_valid_records_and_benchmark_json(tmp_path: Path) -> None:
    bench_json = tmp_path / "bench.json"
    proc = run_pytest("-k", "vit", "--lvm-profile", "smoke", "--lvm-out", str(tmp_path / "out"),
                      f"--benchmark-json={bench_json}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = only_run(tmp_path / "out")
    assert f"run folder: {run_dir}" in proc.stdout.replace("\n", " ")
    records = load_records(run_dir)
    validator = jsonschema.Draft202012Validator(record_schema())
    for rec in records:
        validator.validate(rec)
        # Every value key a bench writes is declared once in lvmharness.store.keys (unit, direction, compare rule).
        assert set(rec["values"]) <= set(keys.BY_NAME), set(rec["values"]) - set(keys.BY_NAME)
    assert all(r["family"] == "vit" and r["status"] == "ok" for r in records)
    latency = [r for r in records if r["metric"] == "latency"]
    assert {(r["batch_size"], r["img_size"]) for r in latency} == {(1, 32), (2, 32), (1, 96)}
    flops = {r["img_size"]: r for r in records if r["metric"] == "flops"}
    assert set(flops) == {32, 96}
    assert flops[32]["provenance"]["verified_by"]["rel_diff"] <= 1e-3
    for rec in latency:
        assert len(rec["values"]["samples"]) == rec["provenance"]["rounds"]
        assert rec["values"]["throughput_img_s"] > 0
        # MACs scale with batch; MFU uses the peak measured by the probe recorded in env.json.
        assert rec["values"]["macs"] == rec["batch_size"] * flops[rec["img_size"]]["values"]["macs"]
        # MFU is a fraction of the peak: in (0, 1], or left out with the ratio named apart (Winograd-like kernels).
        v, prov = rec["values"], rec["provenance"]
        assert 0 < v["mfu"] <= 1 if "mfu" in v else prov["achieved_over_peak"] > 1
        assert v["achieved_flops_per_s"] == pytest.approx(2 * v["macs"] / (v["latency_ms_p50"] / 1e3))
        # Every timed record says what the process got while it was timed.
        assert isinstance(v["contended"], bool) and v["cpu_share"] >= 0 and "contention" in prov
    memory = {(r["metric"], r["batch_size"], r["img_size"]): r for r in records
              if r["metric"] in ("memory_inference", "memory_train_step")}
    assert len(memory) == 6 and all(r["provenance"]["isolation"] == "fresh process" for r in memory.values())
    # Each measured memory case has its prediction beside it, checked against MemTracker on a real run.
    predicted = {r["case_id"]: r for r in records if r["metric"] == "memory_predicted"}
    assert len(predicted) == 6
    for case_id, rec in predicted.items():
        assert case_id.endswith(("-inference]", "-train_step]"))
        assert abs(rec["values"]["prediction_rel_error"]) <= 0.03, rec["values"]
    (mem_scaling,) = [r for r in records if r["metric"] == "memory_scaling"]
    assert 0.9 < mem_scaling["values"]["activation_exponent_vs_pixels"] < 2.0
    instance = [r for r in records if r["metric"] == "instance_latency"]
    assert {r["img_size"] for r in instance} == {32, 96}
    assert all(r["values"]["instance_p90_sufficient"] and r["values"]["offline_throughput_img_s"] > 0 for r in instance)
    (scaling,) = [r for r in records if r["metric"] == "flops_scaling"]
    assert 1.0 < scaling["values"]["macs_exponent_vs_pixels"] < 2.0
    env = json.loads((run_dir / "env.json").read_text())
    assert env["torch"] and env["cpu_cores_available"] >= 1 and env["profile"] == "smoke"
    assert env["peak_flops_per_s"]["cpu/float32"] > 0

    data = json.loads(bench_json.read_text())
    names = {b["name"]: b for b in data["benchmarks"]}
    one = names["bench_forward_latency[smoke_vit-cpu-fp32-b1-32]"]
    ours = next(r for r in latency if r["case_id"] == "latency[smoke_vit-cpu-fp32-b1-32]")
    # pytest-benchmark timed the very rounds we timed.
    assert one["stats"]["rounds"] == ours["provenance"]["rounds"]
    assert one["extra_info"]["latency_ms_p50"] == ours["values"]["latency_ms_p50"]
    compare = subprocess.run(
        [str(Path(sys.executable).parent / "pytest-benchmark"), "compare", str(bench_json)],
        capture_output=True, text=True, timeout=60,
    )
    assert compare.returncode == 0, compare.stderr
    assert "smoke_vit-cpu-fp32-b1-32" in compare.stdout


def test_a_failing_case_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    proc = run_pytest("--lvm-models", "smoke_resnet,smoke_vit", "--lvm-img-sizes", "36,32",
                      "--lvm-batch-sizes", "1", "--lvm-profile", "smoke", "--lvm-out", str(tmp_path),
                      "-k", "forward")
    assert proc.returncode == 1, proc.stdout[-3000:]
    records = load_records(only_run(tmp_path))
    status = {r["case_id"]: r["status"] for r in records}
    assert status == {
        "latency[smoke_resnet-cpu-fp32-b1-36]": "ok",  # a CNN takes any size above its stride
        "latency[smoke_resnet-cpu-fp32-b1-32]": "ok",
        "latency[smoke_vit-cpu-fp32-b1-36]": "error",  # 36 is not a multiple of the patch 8
        "latency[smoke_vit-cpu-fp32-b1-32]": "ok",  # ...and the run went on after it
    }
    err = next(r for r in records if r["status"] == "error")
    assert "multiple of the patch size 8" in err["error"]


def test_unknown_model_option_is_a_usage_error_before_any_work(tmp_path: Path) -> None:
    proc = run_pytest("--lvm-models", "vitt", "--lvm-out", str(tmp_path))
    assert proc.returncode == 4  # pytest's usage error
    assert "unknown model 'vitt'" in proc.stderr and "vit_tiny" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_unavailable_device_is_a_skip_with_the_reason(tmp_path: Path) -> None:
    import torch

    # A device this machine lacks: CUDA itself where there is none, else the index after the last GPU.
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device, reason = (f"cuda:{count}", f"only {count} CUDA device(s)") if count else ("cuda", "CUDA is not available")
    proc = run_pytest("--lvm-profile", "smoke", "--lvm-device", device, "--lvm-models", "smoke_vit",
                      "--lvm-batch-sizes", "1", "--lvm-out", str(tmp_path), "-k", "forward", "-rs")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert reason in proc.stdout
    assert "--lvm-device" in proc.stdout  # the skip names this front end's option
    records = load_records(only_run(tmp_path))
    assert [r["status"] for r in records] == ["skipped"]
