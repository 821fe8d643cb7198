"""``make gpu-check`` where it cannot check anything: no GPU (stops at once, one line, non-zero), and a GPU whose
driver is too old for torch's CUDA runtime (every cuda test would skip: never reported green)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.helpers.tools import load_tool

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_check.py"


def _module() -> ModuleType:
    return load_tool("gpu_check")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_without_a_gpu_it_stops_at_once_with_one_line(tmp_path: Path) -> None:
    gpu_check = _module()
    if gpu_check._nvidia_smi()[0] is not None:
        pytest.skip("an NVIDIA driver is installed here")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "logs")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and "no NVIDIA GPU on this machine" in lines[0]
    assert not (tmp_path / "logs").exists()  # stopped before anything was written


def test_a_driver_too_old_for_the_runtime_is_never_green(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu_check = _module()
    monkeypatch.setattr(gpu_check, "_nvidia_smi", lambda: ("470.57", ["NVIDIA A100-SXM4-40GB"]))
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, line = gpu_check.preflight()
    assert code == 3
    assert "470.57" in line and "CUDA 12.8" in line and "does not report green" in line
    monkeypatch.setattr(gpu_check, "preflight", lambda: (3, line))
    assert gpu_check.main([]) == 3


def test_every_step_has_a_timeout_within_the_deadline() -> None:
    gpu_check = _module()
    names = [s[0] for s in gpu_check.STEPS]
    assert names[0] == "cuda-tests"  # most important first
    assert len(set(names)) == len(names) and all(0 < s[1] <= 120 for s in gpu_check.STEPS)
    assert sum(s[1] for s in gpu_check.STEPS) <= gpu_check.DEADLINE_S < 9 * 60
