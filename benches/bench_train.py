"""Training cost: a bounded number of real training steps (forward, backward, AdamW) through the real data
pipeline, timed like an epoch: data wait and compute apart, synchronized.

The headline ``throughput_img_s`` is the steady state: images per step ÷ median step time after a warm-up of
its own (the first steps pay allocator growth, worker start-up and lazy initialization: ``first_step_ms``).
``epoch_s`` / ``epoch_throughput_img_s`` are the bounded epoch's wall time and rate, warm-up included.

    pytest benches/bench_train.py -k resnet                          # synthetic data unless data/ has CIFAR-100
    pytest benches/bench_train.py --lvm-train-dataset cifar100 --lvm-dtype amp_bf16 --lvm-device cuda
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from torch import nn

from lvmharness.bench import Lvm
from lvmharness.models.build import create_model
from lvmharness.runtime.data import DataSplits
from lvmharness.runtime.execution import numerics_settings
from lvmharness.train import TrainConfig, train_one_epoch
from lvmharness.train.loop import WARMUP_STEPS
from lvmharness.train.run import build_loader, build_optimizer, grad_scaler, resolve_amp

pytestmark = pytest.mark.lvm_metric("train")
WORKERS = 2


def bench_train_steps(lvm: Lvm, lvm_train_data: Callable[[int], DataSplits]) -> None:
    case = lvm.case
    if case.dtype in ("bf16", "fp16"):
        pytest.skip("pure bf16/fp16 training is not measured; use amp_bf16 / amp_fp16 (fp32 weights, autocast)")
    if case.exec_options().compile or case.exec_options().channels_last:
        pytest.skip("training benches run eager and contiguous")
    steps = WARMUP_STEPS + lvm.session.profile.train_steps
    with lvm.record("train_steps", phase="train") as rec:
        device = lvm.model().device  # the device check (absent devices skip with the reason)
        splits = lvm_train_data(case.img_size)
        # The optimizer settings of train.py's defaults; no schedule warm-up: every step runs at the peak rate.
        cfg = TrainConfig(model=case.model, batch_size=case.batch_size or 1, img_size=case.img_size,
                          amp=case.dtype.removeprefix("amp_") if case.dtype.startswith("amp_") else None)
        amp_dtype = resolve_amp(cfg.amp, device)
        model = create_model(case.spec, img_size=case.img_size, num_classes=splits.num_classes, device=device)
        loader = build_loader(splits.train, batch_size=cfg.batch_size, workers=WORKERS, seed=cfg.seed, device=device,
                              num_samples=steps * cfg.batch_size)
        optimizer, scheduler = build_optimizer(model, lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                               warmup_steps=0, total_steps=steps)
        stats = train_one_epoch(model, loader, optimizer, nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
                                device=device, epoch=0, max_steps=steps, scheduler=scheduler,
                                scaler=grad_scaler(device, amp_dtype), amp_dtype=amp_dtype)
        steady = stats.steady(WARMUP_STEPS)
        rec.values.update(
            steps=stats.steps, epoch_s=stats.epoch_s, data_wait_s=stats.data_wait_s, compute_s=stats.compute_s,
            data_wait_share=stats.data_wait_s / stats.epoch_s, epoch_throughput_img_s=stats.images / stats.epoch_s,
            loss=stats.loss, samples=stats.step_ms, **steady.values(),
        )
        if stats.contention is not None:
            rec.values.update(stats.contention.values())
            rec.provenance["contention"] = stats.contention.provenance()
        rec.provenance.update(dataset=splits.source, workers=WORKERS, optimizer="AdamW", **steady.provenance(),
                              settings=numerics_settings(), timing=(
            "throughput_img_s = batch / median step time after warmup_steps; epoch_s = wall time of the bounded "
            "epoch, warm-up included; data wait includes the host-to-device copy"))
