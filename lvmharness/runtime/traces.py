"""torch.profiler traces, always in a separate, untimed pass; one folder per case that opens everywhere.

Traces go to ``<dir>/<case>/`` through ``tensorboard_trace_handler`` (Chrome trace-event JSON, ``*.pt.trace.json``),
with shapes and memory recorded. The same folder is read by:

* TensorBoard with the torch-tb-profiler plugin (0.4.3, its last release): ``tensorboard --logdir <dir>`` lists one
  run per case under the PYTORCH_PROFILER tab;
* Perfetto (ui.perfetto.dev, "Open trace file") and ``chrome://tracing``: the file is Chrome's trace-event format;
* Holistic Trace Analysis: ``TraceAnalysis(trace_dir=<dir>/<case>)``. Each file carries ``distributedInfo`` (rank 0
  of 1) so HTA need not guess the rank. On a CPU-only trace HTA parses the ops into its trace frame (names,
  durations, shapes, profiler steps); its kernel, idle-time, overlap, memory-bandwidth and queue analyses need the
  CUDA kernels of a GPU trace.

A trace is kept small: ``active`` profiled steps (3 by default) after one skipped and one warm-up step.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

from lvmharness.runtime.devices import synchronizer


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
    for path in trace_files(out_dir):
        mark_rank(path)
    return out_dir


def trace_files(folder: Path) -> list[Path]:
    """The trace-event files under a folder (``*.pt.trace.json`` and gzipped ones), in name order."""
    return sorted(p for p in folder.rglob("*.pt.trace.json*") if p.is_file())


def trace_bytes(folder: Path) -> tuple[int, int]:
    """(number of trace files, their total size in bytes) under a folder."""
    files = trace_files(folder)
    return len(files), sum(p.stat().st_size for p in files)


def mark_rank(path: Path, rank: int = 0, world_size: int = 1) -> None:
    """Add ``distributedInfo`` to a single-process trace, as torch.distributed runs write it; HTA indexes traces by
    that rank and otherwise warns and guesses."""
    if path.suffix != ".json":
        return
    doc = json.loads(path.read_text(encoding="utf-8"))
    if "distributedInfo" in doc:
        return
    doc["distributedInfo"] = {"backend": "none", "rank": rank, "world_size": world_size}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    tmp.replace(path)


def write_scalars(out_dir: Path, values: dict[str, Any], *, step: int = 0, prefix: str = "") -> None:
    """Numeric values as TensorBoard scalars next to the trace, so one logdir shows both."""
    from torch.utils.tensorboard import SummaryWriter

    out_dir.mkdir(parents=True, exist_ok=True)
    with SummaryWriter(log_dir=str(out_dir)) as writer:
        for key, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                writer.add_scalar(f"{prefix}{key}", value, step)
