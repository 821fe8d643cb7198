"""The pytest plugin as an installed package sees it: loaded in any project, torch-free until used, options
checked once at parse time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lvmharness.store.loading import load_records

PROBE = """
import json, sys
import pytest
rc = pytest.main(sys.argv[1:])
print("LVM_PROBE " + json.dumps({"rc": int(rc), "plugin": "lvmharness.bench.plugin" in sys.modules,
                                 "heavy": sorted(m for m in ("torch", "timm", "torchvision") if m in sys.modules)}))
"""


def probe(folder: Path, *args: str) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=folder, capture_output=True, text=True,
                          timeout=300)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("LVM_PROBE ")), None)
    assert line is not None, proc.stdout[-2000:] + proc.stderr[-2000:]
    result: dict[str, object] = json.loads(line.removeprefix("LVM_PROBE "))
    result["output"] = proc.stdout + proc.stderr
    return result


def test_collecting_an_unrelated_project_imports_no_torch(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    result = probe(tmp_path, "--collect-only", "-q", "-p", "no:cacheprovider")
    assert result["rc"] == 0, result["output"]
    assert result["plugin"] is True  # the entry point loaded the plugin: the check below is not vacuous
    assert result["heavy"] == [], result["heavy"]


def test_running_an_unrelated_test_imports_no_torch(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    result = probe(tmp_path, "-q", "-p", "no:cacheprovider")
    assert result["rc"] == 0 and result["plugin"] is True, result["output"]
    assert result["heavy"] == []
    assert "lvmharness" not in str(result["output"])  # no summary section when nothing was measured
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--lvm-budget-s", "-1"], "argument --lvm-budget-s: '-1' must be a finite number of seconds >= 0"),
    (["--lvm-budget-s", "nan"], "argument --lvm-budget-s: 'nan' must be a finite number of seconds >= 0"),
    (["--lvm-budget-s", "inf"], "'inf' must be a finite number"),
    (["--lvm-batch-sizes", "1,0"], "argument --lvm-batch-sizes: 0 must be a positive integer"),
    (["--lvm-img-sizes", "224,x"], "argument --lvm-img-sizes: 'x' is not an integer"),
    (["--lvm-img-sizes", ","], "argument --lvm-img-sizes: ',' names nothing"),
    (["--lvm-dtype", "fp32,fp8"], "argument --lvm-dtype: unknown dtype 'fp8': valid dtypes are fp32, bf16"),
    (["--lvm-device", "cpu,cdua"], "argument --lvm-device: unknown device 'cdua': valid devices are auto, cpu"),
    (["--lvm-mem-limit", "2parsecs"], "argument --lvm-mem-limit: memory size '2parsecs' not understood"),
    (["--lvm-run-id", "../up"], "argument --lvm-run-id: run id '../up' is not valid"),
    (["--lvm-profile", "huge"], "argument --lvm-profile: invalid choice: 'huge'"),
])
def test_bad_option_values_are_usage_errors_before_anything_runs(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "test_plain.py").write_text("def test_one():\n    assert True\n")
    result = probe(tmp_path, "-q", "-p", "no:cacheprovider", *args)
    assert result["rc"] == 4, result["output"]  # pytest's usage error
    assert message in str(result["output"])
    assert "Traceback" not in str(result["output"]) and "INTERNALERROR" not in str(result["output"])
    assert result["heavy"] == []  # rejected while parsing, before any model code


# In-process (pytest's own pytester): these check what the plugin tells pytest, not what it imports.
def test_unknown_axis_in_the_marker_is_an_error_naming_the_bench(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_axes="import pytest\n\n@pytest.mark.lvm_axes('model', 'colour')\ndef test_x(lvm):\n"
                                   "    pass\n")
    result = pytester.runpytest("-q", "-p", "no:cacheprovider", "--lvm-profile", "smoke", "--collect-only")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*test_axes.py::test_x: lvm_axes: unknown axis 'colour'*"])


def test_markers_are_registered_by_the_plugin(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["@pytest.mark.lvm_metric(name)*", "@pytest.mark.lvm_axes(*axes, **fixed)*"])
    ini = (Path(__file__).resolve().parents[2] / "pytest.ini").read_text()
    assert "lvm_metric" not in ini and "lvm_axes" not in ini  # declared once, in the plugin


def test_library_errors_in_a_bench_name_the_plugin_options(tmp_path: Path) -> None:
    (tmp_path / "test_cfg.py").write_text(
        "from lvmharness.train import TrainConfig\n\n"
        "def test_cfg(lvm):\n"
        "    with lvm.record('train_steps', phase='train'):\n"
        "        TrainConfig(model=lvm.case.model, batch_size=0)\n"
    )
    result = probe(tmp_path, "-q", "-p", "no:cacheprovider", "--lvm-profile", "smoke", "--lvm-models", "smoke_vit",
                   "--lvm-batch-sizes", "1", "--lvm-img-sizes", "32", "--lvm-device", "cpu",
                   "--lvm-out", str(tmp_path / "out"))
    out = str(result["output"])
    assert result["rc"] == 1, out
    assert "--lvm-batch-sizes must be >= 1, got 0" in out and "--batch_size" not in out
    (run,) = (tmp_path / "out").iterdir()
    (record,) = load_records(run)
    assert record["status"] == "error" and "--lvm-batch-sizes must be >= 1" in record["error"]


def test_a_missing_dataset_names_the_plugin_options(tmp_path: Path) -> None:
    (tmp_path / "test_data.py").write_text(
        "from lvmharness.runtime.data import DataSplits\n\n"
        "def test_data(lvm, lvm_train_data):\n"
        "    with lvm.record('train_steps', phase='train'):\n"
        "        lvm_train_data(32)\n"
    )
    result = probe(tmp_path, "-q", "-p", "no:cacheprovider", "--lvm-profile", "smoke", "--lvm-models", "smoke_vit",
                   "--lvm-batch-sizes", "1", "--lvm-device", "cpu", "--lvm-train-dataset", "cifar100",
                   "--lvm-data-dir", str(tmp_path / "nodata"), "--lvm-out", str(tmp_path / "out"))
    out = str(result["output"])
    assert result["rc"] == 1, out
    assert "pass --lvm-train-dataset synthetic" in out and "--dataset" not in out
