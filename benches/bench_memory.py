"""Peak memory of inference and of one training step, and the largest batch that fits.

    pytest benches/bench_memory.py -k resnet                         # CPU: peak RSS of a fresh process
    pytest benches/bench_memory.py --lvm-device cuda --lvm-profile full   # allocated vs reserved, batch 1…256
    pytest benches/bench_memory.py -k max_batch --lvm-mem-limit 2GiB  # search under a cap

Every case runs in its own spawned process (never in the timing process). Out-of-memory is recorded as
``status: oom`` (shown as xfail) and the next case runs; a crashed or killed child is an ``error`` record.
"""

from __future__ import annotations

import pytest

from lvmharness.bench import Lvm
from lvmharness.measure.memory import max_batch, run_isolated

pytestmark = pytest.mark.lvm_metric("memory")


def _raise_for(status: str, error: str | None) -> None:
    import torch

    if status == "oom":
        raise torch.OutOfMemoryError(error or "out of memory")
    if status != "ok":
        raise RuntimeError(error or "memory child failed")


@pytest.mark.parametrize("mode", ["inference", "train_step"])
def bench_memory(lvm: Lvm, mode: str) -> None:
    phase = "inference" if mode == "inference" else "train"
    with lvm.record(f"memory_{mode}", phase=phase) as rec:
        result = run_isolated(lvm.memory_case(mode))
        rec.values.update(result.values())
        rec.provenance.update(result.provenance())
        _raise_for(result.status, result.error)


@pytest.mark.lvm_axes("model", "device", "dtype", "img_size")  # the search finds the batch size
@pytest.mark.parametrize("mode", ["inference", "train_step"])
def bench_max_batch(lvm: Lvm, mode: str) -> None:
    case = lvm.memory_case(mode, batch_size=1)
    if case.mem_limit_bytes is None and not case.device.startswith("cuda"):
        pytest.skip("max batch on cpu needs a cap: pass --lvm-mem-limit (e.g. 2GiB)")
    phase = "inference" if mode == "inference" else "train"
    with lvm.record(f"max_batch_{mode}", phase=phase) as rec:
        found = max_batch(case)
        rec.values.update(
            max_batch_size=found["max_batch_size"], first_oom_batch=found["first_oom_batch"],
            mem_limit_bytes=case.mem_limit_bytes,
        )
        rec.provenance.update(probes=found["probes"], search="doubling from 1, then bisection; one child per probe")
