from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lvmharness.cli import main
from lvmharness.results import load_records


def test_models_lists_aliases(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_alias = {r["alias"]: r for r in rows}
    assert by_alias["swin"]["timm_name"] == "swin_base_patch4_window7_224"
    assert {r["family"] for r in rows} == {"vit", "deit", "swin", "resnet"}


def test_latency_json_and_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["latency", "smoke_vit", "--device", "cpu", "--batch-size", "2", "--budget-s", "0.05",
                 "--json", "--out", str(tmp_path)])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["batch_size"] == 2 and out["img_size"] == 32 and out["latency_ms_p50"] > 0
    (run,) = list(tmp_path.iterdir())
    (rec,) = load_records(run)
    assert rec["values"]["latency_ms_p50"] == out["latency_ms_p50"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["latency", "vitt"], "unknown model 'vitt'"),
        (["latency", "vit", "--img-size", "225", "--device", "cpu"], "Valid sizes near it: "),
        (["latency", "smoke_vit", "--device", "tpu"], "valid devices are"),
    ],
)
def test_bad_input_is_exit_2_with_the_reason(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_python_dash_m_works() -> None:
    proc = subprocess.run([sys.executable, "-m", "lvmharness", "models"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "vit_base_patch16_224" in proc.stdout
