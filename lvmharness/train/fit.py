"""A whole run: epochs of ``train_one_epoch`` + ``evaluate`` with outputs to sinks, and the untimed trace pass."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from lvmharness.runtime import data as datamod
from lvmharness.runtime import traces
from lvmharness.train import checkpoint, distributed
from lvmharness.train.config import TrainConfig
from lvmharness.train.loop import EpochStats, NonFiniteLossError, evaluate, train_one_epoch, train_step
from lvmharness.train.run import TrainRun, build_run, check_input_file, check_output_dir, set_epoch
from lvmharness.train.sinks import Sink, default_sinks


def epoch_row(stats: EpochStats) -> dict[str, Any]:
    """The figures of one epoch: its stats, the steady-state rate (``throughput_img_s``) and the whole epoch's
    rate (``epoch_throughput_img_s``, first steps and all)."""
    row = {k: v for k, v in asdict(stats).items() if k not in ("step_ms", "contention")}
    row.update(stats.steady().values())
    if stats.contention is not None:
        row.update(stats.contention.values())
    row["epoch_throughput_img_s"] = stats.images / stats.epoch_s if stats.epoch_s > 0 else None
    return row


def fit(run: TrainRun, sinks: Sequence[Sink] = ()) -> dict[str, Any]:
    """Train from ``run.start_epoch`` to ``cfg.epochs``, evaluating after each epoch; returns the summary."""
    cfg = run.cfg
    last = None
    t_start = time.perf_counter()

    def on_step(step: int, loss: torch.Tensor) -> None:
        for sink in sinks:
            sink.step(step, loss)

    for epoch in range(run.start_epoch, cfg.epochs):
        set_epoch(run.train_loader, epoch, cfg.seed)
        for sink in sinks:
            sink.epoch_start(run, epoch)
        try:
            stats = train_one_epoch(
                run.net, run.train_loader, run.optimizer, run.criterion, device=run.device, epoch=epoch,
                max_steps=run.steps_per_epoch, scheduler=run.scheduler, scaler=run.scaler, amp_dtype=run.amp_dtype,
                dist=run.dist, on_step=on_step,
            )
        except NonFiniteLossError as exc:
            done = f"epoch {epoch}" if epoch else "none yet"
            raise NonFiniteLossError(f"{exc.template} The last good checkpoint is {run.checkpoint_path} ({done}).",
                                     field="lr") from None
        ev = evaluate(run.model, run.eval_loader(), device=run.device, amp_dtype=run.amp_dtype,
                      max_steps=cfg.max_eval_steps, dist=run.dist)  # the unwrapped module: no DDP collectives
        stats.top1, stats.top5, stats.eval_s = ev.top1, ev.top5, ev.seconds
        last = stats
        row = epoch_row(stats)
        run.history.append(row)
        for sink in sinks:
            sink.epoch_end(run, stats, row)
    best = max((h["top1"] for h in run.history if h.get("top1") is not None), default=None)
    summary: dict[str, Any] = {
        "epochs": len(run.history), "top1": last.top1 if last else None, "top5": last.top5 if last else None,
        "best_top1": best, "params": sum(p.numel() for p in run.model.parameters()),
        "num_classes": run.splits.num_classes, "wall_s": time.perf_counter() - t_start,
        # training time alone: the epochs' wall times without the evaluation passes
        "train_s": sum(h["epoch_s"] for h in run.history if h.get("epoch_s") is not None),
    }
    for sink in sinks:
        sink.finish(run, summary)
    return summary


def trace_steps(run: TrainRun, *, active: int = 3) -> Path | None:
    """A torch.profiler trace of a few training steps on one batch, on every process (under DDP each backward
    all-reduces, so every rank must step), written by rank 0 only; then every state the steps touched is put
    back, so the experiment is the one an untraced run does. Returns the trace folder on rank 0."""
    saved = {name: copy.deepcopy(getattr(run, name).state_dict())
             for name in ("model", "optimizer", "scheduler", "scaler")}
    rng = checkpoint.rng_state(run.device)
    set_epoch(run.train_loader, 0, run.cfg.seed)
    x, y = next(iter(run.train_loader))
    x, y = x.to(run.device), y.to(run.device)
    out = run.out / "tb" / "profile"
    try:
        traces.trace(lambda: train_step(run.net, x, y, run.optimizer, run.criterion, scaler=run.scaler,
                                        amp_dtype=run.amp_dtype),
                     out, run.device, active=active, worker_name="train", write=run.dist.main)
    finally:
        for name, state in saved.items():
            getattr(run, name).load_state_dict(state)
        checkpoint.set_rng_state(rng, run.device)
        distributed.barrier(run.dist)
    return out if run.dist.main else None


def train(cfg: TrainConfig, *, splits: datamod.DataSplits | None = None,
          extra_sinks: Sequence[Sink] = ()) -> dict[str, Any]:
    """``train.py`` as a function: check the outputs can be written, seed, build, optionally trace, fit."""
    # Resolved ('x/../y' is ./y; links followed) and checked before anything is built or written.
    out, results = check_output_dir(cfg.output_dir, "output_dir"), check_output_dir(cfg.results_dir, "results_dir")
    if (str(out), str(results)) != (cfg.output_dir, cfg.results_dir):
        cfg = replace(cfg, output_dir=str(out), results_dir=str(results))
    for option in ("resume", "init_checkpoint"):
        if getattr(cfg, option) is not None:
            check_input_file(getattr(cfg, option), option)
    dist = distributed.from_env()
    device = distributed.init(dist, cfg.device)
    sinks: list[Sink] = []
    try:
        checkpoint.seed_everything(cfg.seed + dist.rank)
        run = build_run(cfg, device=device, dist=dist, splits=splits)
        if run.dist.main:
            run.out.mkdir(parents=True, exist_ok=True)
        if cfg.profile:
            where = trace_steps(run)
            if where is not None:
                print(f"profiler trace written to {where}", flush=True)
        if run.start_epoch >= cfg.epochs and run.dist.main:
            print(f"nothing to do: the checkpoint has {run.start_epoch} of {cfg.epochs} epochs", flush=True)
        sinks = [*default_sinks(run), *extra_sinks]
        return fit(run, sinks)
    finally:
        for sink in sinks:
            sink.close()
        distributed.close(dist)
