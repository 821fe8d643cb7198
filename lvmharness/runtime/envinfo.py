"""What a run ran on: versions, hardware, git commit, the machine fingerprint.

Each writer of a run folder stores its own copy (``env/<writer>.json``, replaced by that writer when it learns
more, e.g. a peak probe); ``env.json`` is the merged view of them (see ``lvmharness.store.loading``)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import timm
import torch
import torchvision

from lvmharness import __version__
from lvmharness.core.clock import utc_now
from lvmharness.runtime import machine
from lvmharness.runtime.devices import cpu_count, cpu_model, device_name
from lvmharness.store.records import SCHEMA_VERSION


def git_commit(where: Path | None = None) -> dict[str, Any]:
    cwd = str(where or Path.cwd())
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=cwd, capture_output=True, text=True, timeout=10, check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": sha, "git_dirty": dirty}


def collect(devices: list[torch.device] | None = None) -> dict[str, Any]:
    cuda_ok = torch.cuda.is_available()
    env: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "created_utc": utc_now(),
        "lvmharness": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda_ok else None,
        "cuda_available": cuda_ok,
        "cpu_model": cpu_model(),
        "cpu_cores_available": cpu_count(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "cpu_logical": psutil.cpu_count(logical=True),
        "ram_bytes": psutil.virtual_memory().total,
        "torch_num_threads": torch.get_num_threads(),
        "hostname": platform.node(),
        "machine": machine.machine(),
        "fingerprint": machine.fingerprint(),
        # cuda:N counts the GPUs this variable leaves visible, in its order: without it cuda:N names no physical GPU.
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if cuda_ok:
        env["cuda_devices"] = [
            {
                "index": i,
                "name": torch.cuda.get_device_name(i),
                "total_memory_bytes": torch.cuda.get_device_properties(i).total_memory,
                "capability": ".".join(map(str, torch.cuda.get_device_capability(i))),
                "uuid": str(torch.cuda.get_device_properties(i).uuid),
            }
            for i in range(torch.cuda.device_count())
        ]
    if devices:
        env["devices"] = {str(d): device_name(d) for d in devices}
    env.update(git_commit())
    return env
