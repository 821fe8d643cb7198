"""Peak memory of inference and of one training step, and the largest batch that fits.

    pytest benches/bench_memory.py -k resnet                         # CPU: peak RSS of a fresh process
    pytest benches/bench_memory.py --lvm-device cuda --lvm-profile full   # allocated vs reserved, batch 1…256
    pytest benches/bench_memory.py -k max_batch --lvm-mem-limit 2GiB  # search under a cap
    pytest benches/bench_memory.py -k "predicted or scaling"          # predictions on fake tensors, checked

Beside each measured case, a ``memory_predicted`` record (its case id is the pytest id's bracket,
``memory_predicted[vit-cpu-fp32-b8-224-train_step]``) holds the peak predicted on fake tensors, its breakdown,
the same step measured by MemTracker on real tensors (in a fresh process on CUDA, where the allocator's peak is
read too), and the relative error. The
predicted quantity is the step *after* the first (optimizer state exists) with ``zero_grad(set_to_none=True)``,
counted in live tensor bytes; the ``memory_train_step`` record is the first step's peak RSS (CPU) or allocator
peak (CUDA), a different quantity, so no error is computed against it.

Every case runs in its own spawned process (never in the timing process). Out-of-memory is recorded as
``status: oom`` (shown as xfail) and the next case runs; a crashed or killed child is an ``error`` record.
"""

from __future__ import annotations

import pytest

from lvmharness.bench import Lvm
from lvmharness.measure.batch_search import max_batch, search_upper
from lvmharness.measure.memory import run_isolated
from lvmharness.measure.prediction import (
    activation_scaling,
    measure_isolated,
    measure_step,
    predict_step,
    record_values,
)
from lvmharness.measure.step import StepConfig

SCALING_STEPS = (1, 2, 3, 4)  # multiples of the native size, as for the MACs scaling fit

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


@pytest.mark.parametrize("mode", ["inference", "train_step"])
def bench_memory_predicted(lvm: Lvm, mode: str) -> None:
    case = lvm.case
    mem = lvm.memory_case(mode)
    if mem.compile_backend is not None:
        pytest.skip("memory under torch.compile is not predicted (the prediction runs the eager step)")
    phase = "inference" if mode == "inference" else "train"
    cfg = StepConfig(case.model, batch_size=mem.batch_size, img_size=mem.img_size, mode=phase, dtype=mem.dtype,
                     channels_last=mem.channels_last, device=mem.device)
    with lvm.record("memory_predicted", phase=phase, case=f"memory_predicted[{case.label}-{mode}]") as rec:
        pred = predict_step(cfg)
        rec.provenance.update(quantity=cfg.quantity(), peak_phase=pred.peak_phase, engine=pred.extra["engine"])
        if cfg.device == "cpu":
            # MemTracker counts only the step's own tensors, so what else this process holds cannot change it:
            # no child needed (a CUDA allocator peak, in contrast, sees the whole process).
            rec.provenance["measured_by"] = "MemTracker on real tensors, in this process"
            rec.values.update(record_values(pred, measure_step(cfg).to_dict()))
            return
        rec.provenance["measured_by"] = "MemTracker and torch.cuda.max_memory_allocated, fresh process"
        measured = measure_isolated(cfg)
        rec.values.update(record_values(pred, measured["memory"] if measured["status"] == "ok" else None))
        if measured["status"] != "ok":  # the prediction stands; the record says why it is unchecked
            rec.provenance["measure_status"] = measured["status"]
            rec.provenance["measure_error"] = measured["error"]


@pytest.mark.lvm_axes("model", batch_size=1)  # each model once, from its native size up; fake tensors
def bench_memory_scaling(lvm: Lvm) -> None:
    """Activation bytes kept for backward against pixels: ~1 for convolutions, windowed or fused attention;
    towards 2 where a score matrix over all tokens is kept."""
    case = lvm.case
    with lvm.record("memory_scaling", phase="train") as rec:
        sizes = [case.img_size * k for k in SCALING_STEPS]
        out = activation_scaling(case.model, sizes)
        rec.values.update(activation_exponent_vs_pixels=out["exponent_vs_pixels"], scaling_img_sizes=sizes,
                          scaling_activation_bytes=out["activation_bytes"])
        rec.provenance.update(quantity=out["quantity"], fit="least squares of log(bytes) on log(img_size^2)")


@pytest.mark.lvm_axes("model", "device", "dtype", "img_size")  # the search finds the batch size
@pytest.mark.parametrize("mode", ["inference", "train_step"])
def bench_max_batch(lvm: Lvm, mode: str) -> None:
    case = lvm.memory_case(mode, batch_size=1)
    if case.mem_limit_bytes is None and not case.device.startswith("cuda"):
        pytest.skip("max batch on cpu needs a cap: pass --lvm-mem-limit (e.g. 2GiB)")
    phase = "inference" if mode == "inference" else "train"
    with lvm.record(f"max_batch_{mode}", phase=phase) as rec:
        # On CUDA the doubling stops at twice the predicted largest batch for the free memory (or the cap).
        upper, bound = search_upper(case) if case.device.startswith("cuda") else (4096, {})
        found = max_batch(case, upper=upper)
        rec.provenance.update(search_upper=upper, hit_upper_bound=bool(found.get("hit_upper_bound")), **bound)
        rec.values.update(
            max_batch_size=found["max_batch_size"], first_oom_batch=found["first_oom_batch"],
            mem_limit_bytes=case.mem_limit_bytes,
        )
        rec.provenance.update(probes=found["probes"], search="doubling from 1, then bisection; one child per probe",
                              hit_upper_bound=bool(found.get("hit_upper_bound")))
