"""Training cost: a bounded number of real training steps (forward, backward, AdamW) through the real data
pipeline, timed like an epoch: data wait and compute apart, synchronized.

    pytest benches/bench_train.py -k resnet                          # synthetic data unless data/ has CIFAR-100
    pytest benches/bench_train.py --lvm-train-dataset cifar100 --lvm-dtype amp_bf16 --lvm-device cuda
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lvmharness.bench import Lvm
from lvmharness.data import DataSplits
from lvmharness.stats import percentile
from lvmharness.train import TrainConfig, Trainer

pytestmark = pytest.mark.lvm_metric("train")


def bench_train_steps(lvm: Lvm, lvm_train_data: Callable[[int], DataSplits], tmp_path: Path) -> None:
    case = lvm.case
    if case.dtype in ("bf16", "fp16"):
        pytest.skip("pure bf16/fp16 training is not measured; use amp_bf16 / amp_fp16 (fp32 weights, autocast)")
    if case.exec_options().compile or case.exec_options().channels_last:
        pytest.skip("training benches run eager and contiguous")
    steps = lvm.session.profile.train_steps
    with lvm.record("train_steps", phase="train") as rec:
        lvm.model()  # the device check (absent devices skip with the reason)
        splits = lvm_train_data(case.img_size)
        cfg = TrainConfig(
            model=case.model, batch_size=case.batch_size or 1, img_size=case.img_size, device=case.device,
            epochs=1, max_steps_per_epoch=steps, workers=2, amp=case.dtype.startswith("amp_"),
            dataset=splits.name, output_dir=str(tmp_path), warmup_epochs=0.0,
        )
        trainer = Trainer(cfg, splits=splits, save_checkpoints=False, write_records=False)
        stats = trainer.train_epoch(0)
        # The first step carries one-off costs (allocator growth, worker start-up): reported apart.
        steady = stats.step_ms[1:] or stats.step_ms
        rec.values.update(
            steps=stats.steps, epoch_s=stats.epoch_s, data_wait_s=stats.data_wait_s, compute_s=stats.compute_s,
            data_wait_share=stats.data_wait_s / stats.epoch_s, throughput_img_s=stats.throughput_img_s,
            first_step_ms=stats.step_ms[0], step_ms_p50=percentile(steady, 50), step_ms_p90=percentile(steady, 90),
            loss=stats.loss, samples=stats.step_ms,
        )
        rec.provenance.update(dataset=splits.source, workers=2, optimizer="AdamW", timing=(
            "epoch_s = wall time of the bounded epoch; data wait includes the host-to-device copy"))
