"""The machine a record was measured on, as a short fingerprint.

A latency or a memory peak belongs to the machine that produced it: the same case on another CPU, another GPU, another
driver or another torch is a different experiment, not a regression. Every record carries ``fingerprint`` (16 hex
digits) and ``env.json`` carries ``machine`` (the parts it hashes), so readers can tell "same machine" from "another
machine" without trusting run ids or folder names.

The parts (and only these: anything that changes per run, such as the time, the git commit or the thread count, stays
out so that two runs on one machine share a fingerprint):

- ``cpu_model``, ``cpu_logical_cores`` (``os.cpu_count()``: the machine's logical cores, not this process's affinity
  set, so xdist workers pinned to a subset of cores keep the machine's fingerprint)
- ``gpu_name``, ``gpu_count`` (the GPUs the run was given: the list before the harness pins each xdist worker to one
  GPU), ``gpu_driver``
- ``torch``, ``timm``
- ``hostname_sha256`` (first 12 hex digits of SHA-256 of the host name: two nodes of one cluster model stay apart
  without the name itself being published with the results)

torch and timm are imported when the parts are collected, not when this module is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from functools import lru_cache
from typing import Any

from lvmharness.core import procfs

# Set by the harness on a worker it pins to one GPU: the CUDA_VISIBLE_DEVICES list the run was given (or "all:<n>").
PINNED_FROM_ENV = "LVMHARNESS_CUDA_VISIBLE_DEVICES_BEFORE_PIN"


def _hostname_hash() -> str:
    return hashlib.sha256(platform.node().encode("utf-8")).hexdigest()[:12]


def _gpu_driver() -> str | None:
    """The NVIDIA kernel driver version, from the driver's own proc file or nvidia-smi; None without one."""
    version = procfs.nvidia_driver_version()
    if version:
        return version
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return out[0] if out else None


def _gpus_given() -> int:
    """GPUs the run was given: before per-worker pinning if the harness pinned this process."""
    before = os.environ.get(PINNED_FROM_ENV)
    if before:
        if before.startswith("all:"):
            return int(before[4:])
        return len([d for d in before.split(",") if d.strip()])
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@lru_cache(maxsize=1)
def machine() -> dict[str, Any]:
    """The parts of the fingerprint (cached: they do not change while a process runs)."""
    import timm
    import torch

    from lvmharness.runtime.devices import cpu_model

    cuda = torch.cuda.is_available()
    return {
        "cpu_model": cpu_model(),
        "cpu_logical_cores": os.cpu_count(),
        "gpu_name": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_count": _gpus_given() if cuda else 0,
        "gpu_driver": _gpu_driver() if cuda else None,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "hostname_sha256": _hostname_hash(),
    }


def fingerprint_of(parts: dict[str, Any]) -> str:
    """16 hex digits of SHA-256 over the parts as canonical JSON (sorted keys): equal parts, equal fingerprint."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def fingerprint() -> str:
    """This machine's fingerprint."""
    return fingerprint_of(machine())

