"""A user's own project, outside this repository, benchmarked through the installed plugin."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema

from lvmharness.store.loading import load_records
from lvmharness.store.record_schema import record_schema
from tests.helpers import runner
from tests.models.test_sources import tiny_conv_counts

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "own-model"


def pytest_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return runner.run_pytest(*args, cwd=folder, timeout=900)


def check_records(folder: Path, metrics: set[str], model: str) -> list[dict[str, Any]]:
    (run,) = [p for p in (folder / "results").iterdir() if p.is_dir()]
    records = load_records(run)
    validator = jsonschema.Draft202012Validator(record_schema())
    for rec in records:
        validator.validate(rec)
    assert {r["metric"] for r in records} == metrics
    assert all(r["status"] == "ok" and r["model"] == model for r in records), records
    return records


def test_a_folder_with_only_a_model_and_a_bench(tmp_path: Path) -> None:
    for name in ("mymodels.py", "bench_mine.py"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    proc = pytest_in(tmp_path, "bench_mine.py", "--lvm-models", "mymodels:build", "--lvm-device", "cpu")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    records = check_records(tmp_path, {"latency", "memory_inference"}, "mymodels:build")
    # The default profile's batch sizes at the factory's size (224: build() declares no native size).
    assert {(r["metric"], r["batch_size"], r["img_size"]) for r in records} == {
        ("latency", 1, 224), ("latency", 8, 224), ("memory_inference", 1, 224)}
    memory = next(r for r in records if r["metric"] == "memory_inference")
    assert memory["provenance"]["isolation"] == "fresh process"  # rebuilt there from mymodels:build


def test_the_model_module_is_found_beside_the_bench_from_another_folder(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    for name in ("mymodels.py", "bench_mine.py"):
        shutil.copy(EXAMPLE / name, project / name)
    proc = pytest_in(tmp_path, "proj/bench_mine.py", "--lvm-models", "mymodels:build", "--lvm-profile", "smoke",
                     "--lvm-img-sizes", "32", "--lvm-batch-sizes", "1", "-k", "latency")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    check_records(tmp_path, {"latency"}, "mymodels:build")


def test_the_project_bench_runs_unchanged_outside_the_repository(tmp_path: Path) -> None:
    shutil.copy(ROOT / "benches" / "bench_latency.py", tmp_path / "bench_latency.py")
    shutil.copy(EXAMPLE / "mymodels.py", tmp_path / "mymodels.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\npython_files = bench_*.py\npython_functions = bench_*\n")
    proc = pytest_in(tmp_path, "--lvm-models", "mymodels:build", "--lvm-profile", "smoke", "--lvm-img-sizes", "32",
                     "--lvm-batch-sizes", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    (record,) = check_records(tmp_path, {"latency"}, "mymodels:build")
    # MACs of the batch: 2 images x the hand count of TinyConvNet at 32 px.
    assert record["values"]["macs"] == 2 * tiny_conv_counts(32)[1]
