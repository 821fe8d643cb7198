"""torch.profiler traces for TensorBoard (the torch-tb-profiler plugin), always in a separate, untimed pass.

Traces go to ``<dir>/<case>/`` through ``tensorboard_trace_handler``, with shapes and memory recorded, so
``tensorboard --logdir <dir>`` lists one run per case under the PYTORCH_PROFILER tab.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

if TYPE_CHECKING:
    from lvmharness.train.trainer import Trainer


def activities(device: torch.device) -> list[ProfilerActivity]:
    acts = [ProfilerActivity.CPU]
    if device.type == "cuda":
        acts.append(ProfilerActivity.CUDA)
    return acts


def trace(step: Callable[[], Any], out_dir: Path, device: torch.device, *, active: int = 3,
          worker_name: str | None = None) -> Path:
    """Profile ``active`` calls of ``step`` (after one skipped and one warm-up call) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
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


def profile_training(trainer: Trainer, *, active: int = 3) -> Path:
    """Trace a few training steps, then restore every state the steps touched (the experiment is unchanged)."""
    saved: dict[str, Any] = {
        "model": copy.deepcopy(trainer.model.state_dict()),
        "optimizer": copy.deepcopy(trainer.optimizer.state_dict()),
        "scheduler": copy.deepcopy(trainer.scheduler.state_dict()),
        "scaler": copy.deepcopy(trainer.scaler.state_dict()),
        "rng": torch.get_rng_state(),
    }
    batches = iter(trainer.train_loader)
    first = next(batches)

    def step() -> None:
        x, y = first
        x, y = x.to(trainer.device), y.to(trainer.device)
        trainer.net.train()
        with trainer._autocast():
            loss = trainer.criterion(trainer.net(x).float(), y)
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.scaler.scale(loss).backward()
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()

    try:
        out = trace(step, trainer.out / "tb" / "profile", trainer.device, active=active, worker_name="train")
    finally:
        trainer.model.load_state_dict(saved["model"])
        trainer.optimizer.load_state_dict(saved["optimizer"])
        trainer.scheduler.load_state_dict(saved["scheduler"])
        trainer.scaler.load_state_dict(saved["scaler"])
        torch.set_rng_state(saved["rng"])
    return out


def write_scalars(out_dir: Path, values: dict[str, Any], *, step: int = 0, prefix: str = "") -> None:
    """Numeric values as TensorBoard scalars next to the trace, so one logdir shows both."""
    from torch.utils.tensorboard import SummaryWriter

    out_dir.mkdir(parents=True, exist_ok=True)
    with SummaryWriter(log_dir=str(out_dir)) as writer:
        for key, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                writer.add_scalar(f"{prefix}{key}", value, step)
