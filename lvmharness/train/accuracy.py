"""``lvm accuracy``: train the model ladder on Fashion-MNIST with fixed seeds and one budget for every model, and
write a ``train_result`` record per model (top-1 and top-5 on the 10,000 test images, params, GMACs, training
time, batch-1 latency of the trained model), so ``lvm report`` draws accuracy against cost with the Pareto front.

Two configurations (``BUDGETS``): *quick* (a fixed class-balanced subset, few epochs: CI and the README) and
*full* (all 60,000 training images, more epochs, with augmentation). Optionally, on the same budget:
* ``distill``: DeiT's hard-label distillation (``train.py --distill_from``) of the ladder's DeiT, the teacher
  being the ladder's most accurate CNN, against the same DeiT trained without a teacher (its ladder run);
* ``finetune``: phase 2 on scikit-learn's digits from a ladder checkpoint vs the same model from scratch, same steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from lvmharness.core.errors import ConfigError
from lvmharness.measure.budget import TimingConfig
from lvmharness.measure.flops import forward_macs
from lvmharness.measure.latency import ForwardCase, Timer, forward_latency
from lvmharness.models.build import resolve
from lvmharness.runtime import idx_data
from lvmharness.runtime.data import DataSplits
from lvmharness.runtime.execution import ExecOptions, Prepared
from lvmharness.train import checkpoint, distributed
from lvmharness.train.config import TrainConfig
from lvmharness.train.fit import fit
from lvmharness.train.run import build_run, check_output_dir
from lvmharness.train.sinks import CheckpointSink, ConsoleSink, RecordSink, Sink

CNN_FAMILIES = ("resnet", "convnext")


@dataclass(frozen=True)
class Budget:
    """What every ladder model gets: the same images, epochs, batch, schedule and seed."""

    train_images: int | None  # None: all 60,000
    epochs: int
    batch_size: int = 128
    lr: float = 2e-3
    warmup_epochs: float = 0.2
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    augment: bool = False
    finetune_epochs: int = 10
    finetune_lr: float = 1e-3


BUDGETS = {
    "quick": Budget(train_images=30_000, epochs=1, lr=5e-3),
    "full": Budget(train_images=None, epochs=5, lr=5e-3, augment=True),
}


@dataclass
class LadderResult:
    alias: str
    family: str
    params: int
    gmacs: float
    top1: float
    top5: float
    train_s: float
    latency_b1_ms_p50: float | None
    checkpoint: Path
    options: dict[str, Any]


class CostSink(Sink):
    """At the end of a run, before the record is written: the trained model's forward MACs per image (its own
    class count) and its forward latency at batch 1 (the harness's Timer, eval mode, fp32)."""

    def __init__(self, latency_budget_s: float) -> None:
        self.latency_budget_s = latency_budget_s

    def finish(self, run: Any, summary: dict[str, Any]) -> None:
        model = run.model
        x = torch.zeros(1, 3, run.img_size, run.img_size, device=run.device)
        summary["gmacs"] = forward_macs(model, x).macs / 1e9
        timer = Timer(run.device, TimingConfig(warmup_rounds=3, warmup_s=0.1, budget_s=self.latency_budget_s,
                                               min_rounds=10, max_rounds=200))
        result = forward_latency(Prepared(model, run.device, ExecOptions()), ForwardCase(1, run.img_size), timer)
        summary["latency_b1_ms_p50"] = result.timing.stats.p50
        model.train()


def _splits(data_dir: Path | str | None, budget: Budget, seed: int, img_size: int) -> DataSplits:
    grey = idx_data.fashion_mnist(data_dir, img_size=img_size, augment=budget.augment,
                                  train_subset=budget.train_images, seed=seed)
    return DataSplits(grey.train, grey.val, grey.num_classes, "fashion_mnist", grey.source)


@dataclass(frozen=True)
class _Ladder:
    """What every training run of one ``run_ladder`` call shares: the budget, where outputs go, device and seed."""

    budget: Budget
    results_dir: Path | str
    work_dir: Path | str
    run_id: str
    device: str
    seed: int
    max_steps_per_epoch: int | None
    latency_budget_s: float
    quiet: bool

    def config(self, alias: str, **changes: Any) -> TrainConfig:
        """The budget's TrainConfig for ``alias``, checkpoints under ``work_dir/run_id/alias``, then ``changes``."""
        b = self.budget
        return replace(TrainConfig(
            model=alias, dataset="fashion_mnist", epochs=b.epochs, batch_size=b.batch_size, lr=b.lr,
            warmup_epochs=b.warmup_epochs, weight_decay=b.weight_decay, label_smoothing=b.label_smoothing,
            workers=0, device=self.device, seed=self.seed, output_dir=str(self.out(alias)),
            results_dir=str(self.results_dir), run_id=self.run_id, max_steps_per_epoch=self.max_steps_per_epoch),
            **changes)

    def out(self, name: str) -> Path:
        return Path(self.work_dir) / self.run_id / name

    def train(self, cfg: TrainConfig, splits: DataSplits) -> dict[str, Any]:
        """One training run with its checkpoint, costs (GMACs, batch-1 latency) and record; its summary."""
        device = distributed.init(distributed.Dist(), cfg.device)
        checkpoint.seed_everything(cfg.seed)
        run = build_run(cfg, device=device, splits=splits)
        run.out.mkdir(parents=True, exist_ok=True)
        sinks: list[Sink] = [CheckpointSink(), CostSink(self.latency_budget_s), RecordSink(cfg.results_dir)]
        if not self.quiet:
            sinks.append(ConsoleSink())
        try:
            summary = fit(run, sinks)
        finally:
            for sink in sinks:
                sink.close()
        summary["family"] = run.spec.family
        summary["init_info"] = run.init_info
        return summary


def _result(alias: str, summary: dict[str, Any], options: dict[str, Any]) -> LadderResult:
    return LadderResult(alias, summary["family"], int(summary["params"]), float(summary["gmacs"]),
                        float(summary["top1"]), float(summary["top5"]), float(summary["train_s"]),
                        summary.get("latency_b1_ms_p50"), Path(summary["checkpoint"]), options)


def check_models(models: Sequence[str]) -> None:
    for m in models:
        resolve(m)  # a ModelError (one line, with close matches) before anything is trained


@dataclass
class AccuracyRun:
    """Everything ``run_ladder`` did: the ladder's results and the optional experiments' pairs."""

    run_id: str
    run_dir: Path
    results: list[LadderResult]
    wall_s: float
    distill: tuple[LadderResult, LadderResult] | None = None  # (without teacher, with teacher)
    finetune: tuple[LadderResult, LadderResult] | None = None  # (from scratch, fine-tuned)
    finetune_run_dir: Path | None = None


def _check_ladder(models: Sequence[str], distill: bool, finetune: str | None) -> tuple[list[str], list[str]]:
    """Every model resolves, the optional experiments have what they need; (DeiTs with a distillation token, CNNs)."""
    check_models(models)
    if finetune is not None:
        check_models([finetune])
        if finetune not in models:
            raise ConfigError(f"--finetune {finetune}: the phase-1 checkpoint comes from this ladder run; add "
                              f"{finetune} to --models", field=None)
    distilled = [m for m in models if resolve(m).family == "deit" and "distilled" in resolve(m).timm_name]
    cnns = [m for m in models if resolve(m).family in CNN_FAMILIES]
    if distill and (not distilled or not cnns):
        raise ConfigError("--distill needs a DeiT with a distillation token (e.g. ladder_deit_tiny) and a CNN "
                          "teacher (ladder_resnet_* or ladder_convnext_*) among --models", field=None)
    return distilled, cnns


def _distill(ladder: _Ladder, student: str, teacher: LadderResult, splits: DataSplits,
             progress: Callable[[str], None]) -> LadderResult:
    """``student`` trained again on the same budget, with the most accurate CNN's checkpoint as its teacher."""
    progress(f"[distill] {student} with teacher {teacher.alias} ({teacher.top1:.2f}%)")
    cfg = ladder.config(student, distill_from=str(teacher.checkpoint),
                        output_dir=str(ladder.out(f"{student}-distilled")))
    return _result(student, ladder.train(cfg, splits), {"teacher": teacher.alias})


def _finetune(ladder: _Ladder, alias: str, phase1: Path, progress: Callable[[str], None]) -> tuple[LadderResult,
                                                                                                   LadderResult]:
    """Phase 2 on scikit-learn's digits: ``alias`` from scratch, then from its phase-1 checkpoint, same steps."""
    grey = idx_data.digits(img_size=resolve(alias).default_img_size, seed=ladder.seed)
    digits = DataSplits(grey.train, grey.val, grey.num_classes, "digits", grey.source)
    pair = []
    for init in (None, str(phase1)):
        label = "fine-tuned" if init else "scratch"
        progress(f"[phase 2] {alias} on digits, {label}")
        cfg = ladder.config(alias, phase=2, dataset="digits", epochs=ladder.budget.finetune_epochs,
                            lr=ladder.budget.finetune_lr, batch_size=64, warmup_epochs=1.0, init_checkpoint=init,
                            run_id=f"{ladder.run_id}-digits", output_dir=str(ladder.out(f"{alias}-digits-{label}")))
        pair.append(_result(alias, ladder.train(cfg, digits), {"init": label}))
    return pair[0], pair[1]


def run_ladder(models: Sequence[str], *, budget: Budget, results_dir: Path | str, work_dir: Path | str,
               run_id: str, data_dir: Path | str | None = "data", device: str = "cpu", seed: int = 0,
               distill: bool = False, finetune: str | None = None, max_steps_per_epoch: int | None = None,
               latency_budget_s: float = 1.0, quiet: bool = False,
               progress: Callable[[str], None] = print) -> AccuracyRun:
    """Train ``models`` on Fashion-MNIST under ``budget``; records go to ``results_dir/run_id``, checkpoints to
    ``work_dir/run_id/<alias>``. Every input is checked (models, output folders, data files, the teacher) before
    the first model trains."""
    distilled, cnns = _check_ladder(models, distill, finetune)
    check_output_dir(results_dir, "results_dir")
    check_output_dir(work_dir, "work_dir")
    t0 = time.perf_counter()
    sizes = {resolve(m).default_img_size for m in models}
    splits_by_size = {s: _splits(data_dir, budget, seed, s) for s in sorted(sizes)}  # reads and checks the files
    ladder = _Ladder(budget, results_dir, work_dir, run_id, device, seed, max_steps_per_epoch, latency_budget_s,
                     quiet)
    results = []
    for i, alias in enumerate(models, 1):
        progress(f"[{i}/{len(models)}] {alias}")
        summary = ladder.train(ladder.config(alias), splits_by_size[resolve(alias).default_img_size])
        results.append(_result(alias, summary, {}))
    out = AccuracyRun(run_id, Path(results_dir) / run_id, results, 0.0)
    by_alias = {r.alias: r for r in results}
    if distill:
        student = distilled[0]
        teacher = max((by_alias[m] for m in cnns), key=lambda r: r.top1)
        out.distill = (by_alias[student], _distill(ladder, student, teacher,
                                                   splits_by_size[resolve(student).default_img_size], progress))
    if finetune is not None:
        out.finetune = _finetune(ladder, finetune, by_alias[finetune].checkpoint, progress)
        out.finetune_run_dir = Path(results_dir) / f"{run_id}-digits"
    out.wall_s = time.perf_counter() - t0
    return out


def pareto(results: Sequence[LadderResult], cost: Callable[[LadderResult], float]) -> tuple[list[str], list[str]]:
    """(on the front, dominated): a model is dominated when another is at least as accurate for at most its cost,
    and better in one of the two."""
    front: list[str] = []
    dominated: list[str] = []
    for r in results:
        beaten = any(o is not r and cost(o) <= cost(r) and o.top1 >= r.top1 and (cost(o) < cost(r) or o.top1 > r.top1)
                     for o in results)
        (dominated if beaten else front).append(r.alias)
    return front, dominated


def table(results: Sequence[LadderResult]) -> str:
    head = (f"{'model':<24} {'params (M)':>10} {'GMACs':>8} {'top-1 %':>8} {'top-5 %':>8} {'train s':>8} "
            f"{'b1 ms':>7}")
    lines = [head, "-" * len(head)]
    for r in sorted(results, key=lambda r: r.gmacs):
        lat = f"{r.latency_b1_ms_p50:7.2f}" if r.latency_b1_ms_p50 is not None else f"{'-':>7}"
        lines.append(f"{r.alias:<24} {r.params / 1e6:>10.3f} {r.gmacs:>8.4f} {r.top1:>8.2f} {r.top5:>8.2f} "
                     f"{r.train_s:>8.1f} {lat}")
    return "\n".join(lines)
