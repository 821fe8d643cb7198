"""Where a run's results go: each output is a sink handed to ``fit``, so a caller chooses its outputs by the list
it passes (the training bench passes none). Hooks run on the process that holds the sink; ``default_sinks`` gives
rank 0 all of them and the other ranks none."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from lvmharness.measure.flops import analyze
from lvmharness.runtime import envinfo, machine
from lvmharness.runtime.execution import numerics_settings
from lvmharness.store.records import case_label, make_record, record_identity
from lvmharness.store.run_folder import RunStore
from lvmharness.train.checkpoint import save_checkpoint
from lvmharness.train.loop import EpochStats
from lvmharness.train.run import TrainRun

# Scalars of each epoch row that go to TensorBoard.
TB_SCALARS = ("loss", "lr", "top1", "top5", "epoch_s", "data_wait_s", "compute_s", "throughput_img_s",
              "epoch_throughput_img_s")


class Sink:
    """Every hook is a no-op here; a sink overrides the ones it needs."""

    def epoch_start(self, run: TrainRun, epoch: int) -> None: ...

    def step(self, step: int, loss: torch.Tensor) -> None: ...

    def epoch_end(self, run: TrainRun, stats: EpochStats, row: dict[str, Any]) -> None: ...

    def finish(self, run: TrainRun, summary: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class CheckpointSink(Sink):
    """After every epoch, atomically, everything needed to resume exactly."""

    def epoch_end(self, run: TrainRun, stats: EpochStats, row: dict[str, Any]) -> None:
        save_checkpoint(run.checkpoint_path, run.checkpoint(stats.epoch, run.run_id))

    def finish(self, run: TrainRun, summary: dict[str, Any]) -> None:
        summary["checkpoint"] = str(run.checkpoint_path)


class RecordSink(Sink):
    """``train_epoch`` records per epoch and one ``train_result`` per run, in the run folder under ``root``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.store: Any = None

    def _store(self, run: TrainRun) -> Any:
        if self.store is None:
            self.store = RunStore(self.root, run.run_id, fingerprint=machine.fingerprint)
            self.store.write_env({**envinfo.collect([run.device]), "world_size": run.dist.world})
        return self.store

    def _add(self, run: TrainRun, metric: str, values: dict[str, Any], case: str | None = None,
             extra: dict[str, Any] | None = None) -> None:
        store = self._store(run)
        store.add(make_record(run_id=store.run_id, case=case, values=values,
                              provenance={**provenance(run), **(extra or {})}, **identity(run, metric)))

    def epoch_end(self, run: TrainRun, stats: EpochStats, row: dict[str, Any]) -> None:
        ident = identity(run, "train_epoch")
        label = case_label(run.cfg.model, ident["device"], ident["dtype"], run.global_batch, run.img_size,
                           {"dataset": run.splits.name})
        values = {**row, "data_wait_share": stats.data_wait_s / stats.epoch_s if stats.epoch_s else None,
                  "samples": stats.step_ms}
        self._add(run, "train_epoch", values, case=f"train_epoch[{label}-e{stats.epoch}]",
                  extra={**stats.steady().provenance(),
                         "contention": stats.contention.provenance() if stats.contention else None})

    def finish(self, run: TrainRun, summary: dict[str, Any]) -> None:
        if summary["epochs"] == 0:
            return
        values = {k: v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        if "gmacs" not in values:  # a sink before this one may have counted the trained model itself
            values["gmacs"] = analyze(run.cfg.model, img_size=run.img_size, backward=False).macs / 1e9
        self._add(run, "train_result", values)
        summary["run_dir"] = str(self._store(run).run_dir)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()  # this writer is done: rebuild the run folder's merged views


class TensorBoardSink(Sink):
    def __init__(self, log_dir: Path | str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def epoch_end(self, run: TrainRun, stats: EpochStats, row: dict[str, Any]) -> None:
        for key in TB_SCALARS:
            if row.get(key) is not None:
                self.writer.add_scalar(f"train/{key}", row[key], stats.epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class ConsoleSink(Sink):
    """A progress bar per epoch (stderr, hidden when not a terminal) and one line per epoch (stdout)."""

    def __init__(self) -> None:
        self.bar: Any = None

    def epoch_start(self, run: TrainRun, epoch: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=run.steps_per_epoch, desc=f"epoch {epoch + 1}/{run.cfg.epochs}", leave=False,
                        disable=None, file=sys.stderr)

    def step(self, step: int, loss: torch.Tensor) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if not self.bar.disable:  # reading the loss waits for the device: only for a visible bar
                self.bar.set_postfix(loss=f"{float(loss):.3f}")

    def epoch_end(self, run: TrainRun, stats: EpochStats, row: dict[str, Any]) -> None:
        self.close()
        rate = row["throughput_img_s"]
        steady = f"{rate:.1f} img/s steady" if rate is not None else "too few steps for a steady rate"
        print(f"epoch {stats.epoch}/{run.cfg.epochs}: {stats.epoch_s:.2f} s ({steady}, data wait "
              f"{stats.data_wait_s / max(stats.epoch_s, 1e-9):.0%}), loss {stats.loss:.4f}, "
              f"top-1 {stats.top1:.2f}%, top-5 {stats.top5:.2f}%", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def default_sinks(run: TrainRun) -> list[Sink]:
    """train.py's outputs: checkpoint, records, TensorBoard scalars and the console, all on rank 0."""
    if not run.dist.main:
        return []
    return [CheckpointSink(), RecordSink(run.cfg.results_dir), TensorBoardSink(run.out / "tb"), ConsoleSink()]


def identity(run: TrainRun, metric: str) -> dict[str, Any]:
    return record_identity(
        metric=metric, model=run.spec.timm_name, alias=run.cfg.model, family=run.spec.family,
        device=str(run.device.type), dtype=run.dtype_name, batch_size=run.global_batch, img_size=run.img_size,
        phase="train" if run.cfg.phase == 1 else "finetune",
        options={"dataset": run.splits.name, "training_phase": run.cfg.phase, "world_size": run.dist.world,
                 **({"teacher": run.init_info.get("teacher")} if run.cfg.distill_from else {})},
    )


def provenance(run: TrainRun) -> dict[str, Any]:
    cfg = run.cfg
    return {
        "dataset_source": run.splits.source, "per_process_batch": cfg.batch_size, "world_size": run.dist.world,
        "steps_per_epoch": run.steps_per_epoch, "optimizer": "AdamW",
        "schedule": f"linear warm-up {cfg.warmup_epochs} epoch(s) + cosine", "lr": cfg.learning_rate,
        "weight_decay": cfg.weight_decay, "label_smoothing": cfg.label_smoothing, "workers": cfg.workers,
        "amp_dtype": str(run.amp_dtype) if run.amp_dtype else None, "grad_scaler": run.scaler.is_enabled(),
        "timing": "synchronized; data wait includes the host-to-device copy; throughput_img_s is the steady "
                  "state (median step after the first), epoch_throughput_img_s the whole epoch",
        "output_dir": str(run.out), "settings": numerics_settings(), **run.init_info,
    }
