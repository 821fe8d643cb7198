"""Per-instance (single-stream) latency: batch 1, one request after another, transfer included; offline
throughput at a large batch recorded beside it under a different name.

    pytest benches/bench_instance.py -k deit
    pytest benches/bench_instance.py -k resnet --lvm-instance-data cifar100    # real images from ./data
"""

from __future__ import annotations

from typing import Any

import pytest

from lvmharness.bench import Lvm
from lvmharness.measure.instance import single_stream
from lvmharness.measure.latency import ForwardCase, Timer, forward_latency

pytestmark = pytest.mark.lvm_metric("instance")


# Batch 1 by definition (the offline batch is the profile's): every axis but the batch size.
@pytest.mark.lvm_axes("model", "device", "dtype", "img_size")
def bench_per_instance_latency(lvm: Lvm, lvm_instance_samples: tuple[list[Any], str]) -> None:
    profile = lvm.session.profile
    images, source = lvm_instance_samples
    with lvm.record("instance_latency") as rec:
        loaded = lvm.model()
        result = single_stream(loaded.prepared, lvm.case.img_size, samples=images,
                               budget_s=profile.instance_budget_s, samples_source=source)
        rec.values.update(result.values())
        rec.provenance.update(result.provenance())
        # Offline: images / wall time at a large batch. Its own timer, so warm-up is per this shape too.
        offline_case = ForwardCase(profile.offline_batch, lvm.case.img_size)
        offline = forward_latency(loaded.prepared, offline_case, Timer(loaded.device, lvm.session.timing))
        rec.values["offline_throughput_img_s"] = offline.throughput_img_s
        rec.values["offline_batch_size"] = profile.offline_batch
