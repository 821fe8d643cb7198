"""torch.profiler traces for TensorBoard (the torch-tb-profiler plugin), always in a separate, untimed pass.

Traces go to ``<dir>/<case>/`` through ``tensorboard_trace_handler``, with shapes and memory recorded, so
``tensorboard --logdir <dir>`` lists one run per case under the PYTORCH_PROFILER tab.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

from lvmharness.devices import synchronizer


def activities(device: torch.device) -> list[ProfilerActivity]:
    acts = [ProfilerActivity.CPU]
    if device.type == "cuda":
        acts.append(ProfilerActivity.CUDA)
    return acts


def trace(step: Callable[[], Any], out_dir: Path, device: torch.device, *, active: int = 3,
          worker_name: str | None = None, write: bool = True) -> Path:
    """Profile ``active`` calls of ``step`` (after one skipped and one warm-up call) into ``out_dir``. With
    ``write=False`` the same calls run unprofiled and nothing is written: the other ranks of a data-parallel job
    take the steps their collectives need while rank 0 writes the trace."""
    sync = synchronizer(device)  # names the device: a bare torch.cuda.synchronize() waits for the current one
    if not write:
        for _ in range(active + 2):
            step()
            sync()
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    with profile(
        activities=activities(device),
        schedule=schedule(wait=1, warmup=1, active=active, repeat=1),
        on_trace_ready=tensorboard_trace_handler(str(out_dir), worker_name=worker_name),
        record_shapes=True,
        profile_memory=True,
        with_stack=False,
    ) as prof:
        for _ in range(active + 2):
            step()
            sync()
            prof.step()
    return out_dir


def write_scalars(out_dir: Path, values: dict[str, Any], *, step: int = 0, prefix: str = "") -> None:
    """Numeric values as TensorBoard scalars next to the trace, so one logdir shows both."""
    from torch.utils.tensorboard import SummaryWriter

    out_dir.mkdir(parents=True, exist_ok=True)
    with SummaryWriter(log_dir=str(out_dir)) as writer:
        for key, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                writer.add_scalar(f"{prefix}{key}", value, step)
