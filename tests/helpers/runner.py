"""Child processes of the tests: pytest over the benches (or a user's project) and the ``lvm`` command.

A child pytest must not inherit the parent's worker identity: with pytest-xdist, ``PYTEST_XDIST_WORKER`` in the
environment makes a child pytest-benchmark believe it is a worker and skip writing ``--benchmark-json``. Timeouts
only guard against a hang on a slow shared machine; no test asserts a speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment without pytest's per-process variables (xdist worker id, current test)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST_", "PYTEST_CURRENT_TEST"))}
    return {**env, **extra}


def run_pytest(*args: str, cwd: Path = ROOT, cpu: bool = True, timeout: float = 600,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m pytest ARGS`` in ``cwd``; ``cpu`` pins ``--lvm-device cpu`` unless ARGS name a device ("auto" is
    CUDA on a GPU machine, and these tests check CPU records)."""
    device = ("--lvm-device", "cpu") if cpu and not any(a.startswith("--lvm-device") for a in args) else ()
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *device, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env or child_env())


def run_lvm(*args: str, cwd: Path = ROOT, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m lvmharness ARGS`` (the ``lvm`` command) in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "lvmharness", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env or child_env())
