"""The Python API: a module or a name in, typed results with units in their field names out, and records."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

import lvmharness
from lvmharness.store.record_schema import record_schema
from lvmharness.store.run_folder import RunStore
from tests.models.test_sources import tiny_conv_counts


@pytest.fixture
def mymodels(user_modules: Path) -> Path:
    return user_modules


def valid(record: dict[str, object]) -> dict[str, object]:
    jsonschema.Draft202012Validator(record_schema()).validate(record)
    return record


def test_import_lvmharness_stays_torch_free() -> None:
    code = ("import sys, lvmharness; names = dir(lvmharness); "
            "print(all(n in names for n in ('measure_latency', 'count_flops', 'measure_memory', 'load_results', "
            "'register_model')), 'torch' in sys.modules, 'timm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "False", "False"], out.stderr


def test_count_flops_of_a_module_and_of_its_import_path_agree_with_the_hand_count(mymodels: Path) -> None:
    user_models = importlib.import_module("mymodels")  # the user's own module

    params, macs = tiny_conv_counts(32)
    by_module = lvmharness.count_flops(user_models.build(), img_size=32, batch_size=2)
    by_name = lvmharness.count_flops("mymodels:build", img_size=32, batch_size=2)
    for result in (by_module, by_name):
        assert (result.params, result.macs, result.flops) == (params, 2 * macs, 4 * macs)
        assert result.macs_fwd_bwd is not None and result.macs_fwd_bwd > result.macs
    assert by_module.model == "TinyConvNet" and by_name.model == "mymodels:build"
    rec = valid(by_name.record(run_id="nb"))
    assert (rec["metric"], rec["run_id"], rec["batch_size"], rec["img_size"]) == ("flops", "nb", 2, 32)
    fwd_bwd = by_name.macs_fwd_bwd
    assert fwd_bwd is not None
    assert rec["values"] == {"params": params, "macs": 2 * macs, "flops": 4 * macs, "macs_fwd_bwd": fwd_bwd,
                             "flops_fwd_bwd": 2 * fwd_bwd}


def test_measure_latency_of_a_module(mymodels: Path) -> None:
    user_models = importlib.import_module("mymodels")

    lat = lvmharness.measure_latency(user_models.build(), img_size=32, batch_size=2, budget_s=0.05)
    assert 0 < lat.latency_ms_p50 <= lat.latency_ms_p90 <= lat.latency_ms_p99
    assert lat.rounds == len(lat.values["samples"]) and lat.throughput_img_s > 0
    rec = valid(lat.record())
    assert (rec["metric"], rec["model"], rec["batch_size"], rec["status"]) == ("latency", "TinyConvNet", 2, "ok")


def test_measure_memory_rebuilds_from_the_name_and_refuses_a_module(mymodels: Path) -> None:
    mem = lvmharness.measure_memory("mymodels:build", img_size=32)
    assert mem.status == "ok" and mem.rss_peak_bytes is not None and mem.rss_peak_bytes > 0
    assert valid(mem.record())["metric"] == "memory_inference"
    user_models = importlib.import_module("mymodels")

    with pytest.raises(TypeError, match="fresh process"):
        lvmharness.measure_memory(user_models.build())


def test_load_results_reads_a_run_folder(tmp_path: Path, mymodels: Path) -> None:
    result = lvmharness.count_flops("mymodels:build", img_size=32, backward=False)
    with RunStore(tmp_path, "r1") as store:
        store.add(result.record(run_id=store.run_id))
    (rec,) = lvmharness.load_results(tmp_path / "r1")
    assert rec["values"]["macs"] == tiny_conv_counts(32)[1]


def test_the_docs_python_example_runs_and_prints_the_hand_count(tmp_path: Path) -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    section = page[page.index("## From Python"):]
    start = section.index("```python\n") + len("```python\n")
    code = section[start:section.index("\n```", start)]
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # conv 3->8 (3x3, stride 2 on 32 px: 16x16 outputs) + linear 8->10, by hand:
    params = (3 * 8 * 9 + 8) + (8 * 10 + 10)
    macs = 16 * 16 * 8 * (3 * 9) + 8 * 10
    assert proc.stdout.splitlines()[0] == f"{params} {macs}"
