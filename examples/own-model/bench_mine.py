"""My own model's latency and peak memory, through the installed lvmharness plugin.

    pytest bench_mine.py --lvm-models mymodels:build --lvm-device cpu
    pytest bench_mine.py --lvm-models tinyconv,resnet18 --lvm-img-sizes 64 --lvm-batch-sizes 1,8

Records land in results/<run-id>/results.json (``lvm report results/<run-id>`` makes a page of them).
"""

from __future__ import annotations

from typing import Any

import pytest

from lvmharness.bench import Lvm
from lvmharness.measure.latency import forward_latency
from lvmharness.measure.memory import run_isolated


def test_latency(lvm: Lvm, benchmark: Any) -> None:
    """One pytest-benchmark round = one synchronized forward of the batch."""
    with lvm.record("latency") as rec:
        loaded = lvm.model()
        result = forward_latency(loaded.prepared, lvm.forward_case(), loaded.timer, runner=lvm.runner(benchmark))
        rec.values.update(result.values())
        rec.provenance.update(result.provenance())
        lvm.extra_info(benchmark, result.values())


@pytest.mark.lvm_axes("model", "device", "dtype", "img_size", batch_size=1)
def test_peak_memory(lvm: Lvm) -> None:
    """Inference peak memory, measured in a fresh process that rebuilds the model from its import path."""
    with lvm.record("memory_inference") as rec:
        result = run_isolated(lvm.memory_case("inference"))
        assert result.status == "ok", result.error
        rec.values.update(result.values())
        rec.provenance.update(result.provenance())
