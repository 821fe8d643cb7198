"""The training loop as plain functions (timm's ``train_one_epoch`` / ``validate`` shape): one epoch of steps, one
evaluation pass, the learning-rate schedule, and the steady-state summary of step times.

Timing of a step: *data wait* is waiting for the loader plus the copy to the device, *compute* is forward, backward
and optimizer step; the step ends with a device synchronization, so both are real device times. Nothing inside the
timed window reads a value back from the device: the loss is accumulated on the device and read after the step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lvmharness.measure.contention import Contention, Window
from lvmharness.measure.latency import Stats
from lvmharness.runtime.devices import synchronizer
from lvmharness.runtime.execution import autocast
from lvmharness.train import distributed
from lvmharness.train.config import TrainingError
from lvmharness.train.distill import DistillationLoss

# Steady-state step times: the first steps pay one-off costs (allocator growth, worker start-up, lazy init,
# cudnn autotuning) and are reported apart; at least this many steps after them make the quartiles meaningful.
WARMUP_STEPS = 2
MIN_STEADY_STEPS = 5

StepHook = Callable[[int, torch.Tensor], None]


class NonFiniteLossError(TrainingError):
    pass


def cosine_with_warmup(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak learning rate after ``step`` optimizer steps: linear warm-up over ``warmup_steps``
    (Goyal et al. 2017, "Accurate, Large Minibatch SGD"), then half a cosine down to 0 at ``total_steps``
    (Loshchilov & Hutter 2017, SGDR, without restarts)."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


@dataclass
class EpochStats:
    epoch: int  # 1-based
    steps: int
    images: int  # over all processes
    epoch_s: float  # wall time of the (possibly bounded) epoch, slowest process
    data_wait_s: float
    compute_s: float
    loss: float  # mean over the epoch's images
    lr: float  # after the epoch's last step
    top1: float | None = None
    top5: float | None = None
    eval_s: float | None = None
    step_ms: list[float] = field(default_factory=list)  # this process's step times, data wait included
    contention: Contention | None = None  # what this process got of the machine during the epoch

    def steady(self, warmup: int = WARMUP_STEPS) -> SteadyState:
        """The steady state of the epoch's steps (all processes' images per step over this process's times)."""
        return SteadyState(tuple(self.step_ms), self.images / max(1, self.steps), warmup)


@dataclass
class EvalStats:
    top1: float  # percent
    top5: float
    seconds: float
    images: int


def train_step(net: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
               criterion: nn.Module, *, scaler: torch.amp.GradScaler, amp_dtype: torch.dtype | None) -> torch.Tensor:
    """Forward, backward and optimizer step on one batch (already on the device); returns the detached loss,
    still on the device. With an enabled scaler the loss is scaled before backward and the step skipped on
    inf/nan gradients (fp16 AMP: Micikevicius et al. 2018, "Mixed Precision Training")."""
    with autocast(x.device, amp_dtype):
        logits = net(x)  # (B, num_classes); a distilled student in training: (class, distillation) logits
        # () float32; a distillation loss's teacher sees the same augmented batch
        loss = criterion(x, logits, y) if isinstance(criterion, DistillationLoss) else criterion(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def _stop_unless_finite(loss: torch.Tensor, dist: distributed.Dist, device: torch.device, where: str) -> None:
    """Raise NonFiniteLossError when the step's loss (a () tensor on the device) is nan or inf on any rank."""
    finite = bool(torch.isfinite(loss))  # read after the step's sync: no stall inside the timed window
    if dist.enabled:
        # Every rank decides together: a rank stopping alone on its own NaN would leave the others waiting in the
        # next step's gradient all-reduce (NCCL waits forever). One scalar collective per step, outside the timed
        # window.
        (bad,) = distributed.reduce(dist, [0.0 if finite else 1.0], device, op="max")
        finite = bad == 0.0
    if not finite:
        raise NonFiniteLossError(
            f"loss became {float(loss)} at {where}"
            + (f" (non-finite on at least one of {dist.world} ranks; this is rank {dist.rank})" if dist.enabled else "")
            + "; training stopped and nothing of this epoch was saved. Lower {opt:lr} or check the data."
        )


def train_one_epoch(
    net: nn.Module,
    loader: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    *,
    device: torch.device,
    epoch: int,
    max_steps: int | None = None,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: torch.dtype | None = None,
    dist: distributed.Dist = distributed.Dist(),  # noqa: B008 - frozen, so a shared default is safe
    on_step: StepHook | None = None,
) -> EpochStats:
    """Train ``net`` for one epoch (``epoch`` is 0-based), at most ``max_steps`` steps; ``on_step(step, loss)``
    runs after each step, outside its timed window. Raises NonFiniteLossError when the loss is nan or inf."""
    sync = synchronizer(device)
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
    net.train()
    distributed.barrier(dist)
    sync()
    t_epoch = time.perf_counter()
    data_wait = compute = 0.0
    # mps has no float64; elsewhere float64 keeps a long epoch's sum exact enough to compare runs bitwise.
    loss_sum = torch.zeros((), dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)
    images = 0
    step_ms: list[float] = []
    batches = iter(loader)
    with Window(device, torch.get_num_threads()) as window:
        while max_steps is None or len(step_ms) < max_steps:
            t0 = time.perf_counter()
            try:
                x, y = next(batches)
            except StopIteration:
                break
            x = x.to(device, non_blocking=True)  # (B, 3, H, W) float32, normalized
            y = y.to(device, non_blocking=True)  # (B,) class indices
            sync()
            t1 = time.perf_counter()
            loss = train_step(net, x, y, optimizer, criterion, scaler=scaler, amp_dtype=amp_dtype)
            if scheduler is not None:
                scheduler.step()
            loss_sum += loss * x.shape[0]
            sync()
            t2 = time.perf_counter()
            data_wait, compute = data_wait + (t1 - t0), compute + (t2 - t1)
            step_ms.append((t2 - t0) * 1e3)
            images += x.shape[0]
            _stop_unless_finite(loss, dist, device, f"epoch {epoch + 1}, step {len(step_ms)}")
            if on_step is not None:
                on_step(len(step_ms), loss)
        elapsed = time.perf_counter() - t_epoch
    distributed.barrier(dist)
    # Global figures: the slowest process's wall time, everybody's images and loss.
    (elapsed,) = distributed.reduce(dist, [elapsed], device, op="max")
    images_all, loss_all = distributed.reduce(dist, [float(images), float(loss_sum)], device)
    return EpochStats(epoch + 1, len(step_ms), int(images_all), elapsed, data_wait, compute,
                      loss_all / max(1.0, images_all), optimizer.param_groups[0]["lr"], step_ms=step_ms,
                      contention=window.result)


def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    max_steps: int | None = None,
    dist: distributed.Dist = distributed.Dist(),  # noqa: B008 - frozen
) -> EvalStats:
    """Top-1 and top-5 accuracy (percent) over ``loader``, exact across processes when each holds a disjoint shard.
    Pass the unwrapped module under DDP: evaluation needs no collectives. Counts stay on the device until the end."""
    model.eval()
    correct = torch.zeros(2, dtype=torch.int64, device=device)  # (top-1 hits, top-5 hits)
    count = 0
    t0 = time.perf_counter()
    with torch.inference_mode(), autocast(device, amp_dtype):
        for i, (x, y) in enumerate(loader):
            if max_steps is not None and i >= max_steps:
                break
            x, y = x.to(device), y.to(device)
            logits = model(x)  # (B, C)
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices  # (B, k)
            hit = top.eq(y[:, None])  # (B, k) bool, at most one True per row
            correct += torch.stack((hit[:, 0].sum(), hit.any(dim=1).sum()))
            count += int(y.shape[0])
    c1, c5 = (float(v) for v in correct.tolist())  # the one read-back of the pass
    seconds = time.perf_counter() - t0
    c1, c5, n = distributed.reduce(dist, [c1, c5, float(count)], device)
    (seconds,) = distributed.reduce(dist, [seconds], device, op="max")
    return EvalStats(100.0 * c1 / n if n else 0.0, 100.0 * c5 / n if n else 0.0, seconds, int(n))


@dataclass(frozen=True)
class SteadyState:
    """The steady state of a run of steps: images per step ÷ median step time after ``warmup`` steps, with the
    first step's cost apart. ``high_variance`` follows the latency rule (IQR/median above 10%) and is also set
    when fewer than MIN_STEADY_STEPS steps are left after the warm-up (too few to judge the spread)."""

    step_ms: tuple[float, ...]
    images_per_step: float
    warmup: int = WARMUP_STEPS

    @property
    def steady(self) -> tuple[float, ...]:
        return self.step_ms[self.warmup:]

    @property
    def stats(self) -> Any:
        return Stats.of(list(self.steady)) if self.steady else None

    @property
    def throughput_img_s(self) -> float | None:
        stats = self.stats
        return self.images_per_step * 1e3 / stats.p50 if stats is not None and stats.p50 > 0 else None

    def values(self) -> dict[str, Any]:
        stats = self.stats
        out: dict[str, Any] = {"throughput_img_s": self.throughput_img_s,
                               "first_step_ms": self.step_ms[0] if self.step_ms else None}
        if stats is not None:
            out.update(step_ms_p50=stats.p50, step_ms_p90=stats.p90, step_ms_iqr=stats.iqr)
        return out

    def provenance(self) -> dict[str, Any]:
        stats = self.stats
        return {"warmup_steps": min(self.warmup, len(self.step_ms)), "steady_steps": len(self.steady),
                "iqr_rel": stats.iqr_rel if stats is not None else None,
                "high_variance": stats is None or stats.high_variance or len(self.steady) < MIN_STEADY_STEPS}
