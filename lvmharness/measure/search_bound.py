"""Where a measured largest-batch search on CUDA may stop doubling: a bound from the memory prediction.

Without a cap, ``lvmharness.measure.memory.max_batch`` doubles the batch up to 4096, one fresh child process per
probe; on a GPU with 100+ GiB free a small model fits every batch, and the search spends minutes to learn nothing
past the bound. The device's free memory is the real limit, so the doubling stops at twice the largest batch whose
*predicted* peak (fake tensors, seconds) fits the free memory: the measured peak adds allocator rounding and
kernel workspaces to the predicted live bytes, so the measured answer lies below the predicted one, and twice it
leaves room for a prediction that is off. The bisection then runs as before.
"""

from __future__ import annotations

from typing import Any

from lvmharness.measure.memory import MemoryCase

DEFAULT_UPPER = 4096
HEADROOM = 2  # the doubling stops at HEADROOM x the predicted largest batch


def search_upper(case: MemoryCase, budget_bytes: int | None = None) -> tuple[int, dict[str, Any]]:
    """(upper bound for the search, how it was found). ``budget_bytes``: the memory to fit in; by default the CUDA
    device's free memory (``mem_get_info``), or the case's cap when it has one."""
    from lvmharness.measure.prediction import StepConfig, device_budget, predicted_max_batch

    if budget_bytes is None:
        if case.mem_limit_bytes is not None:
            budget_bytes = case.mem_limit_bytes
        elif case.device.startswith("cuda"):
            budget_bytes = device_budget(case.device)["budget_bytes"]
        else:
            return DEFAULT_UPPER, {"upper_from": "default (no device budget to predict against)"}
    if case.compile_backend is not None:
        return DEFAULT_UPPER, {"upper_from": "default (a compiled step's memory is not predicted)"}
    cfg = StepConfig(case.model, batch_size=1, img_size=case.img_size,
                     mode="train" if case.mode == "train_step" else "inference", dtype=case.dtype,
                     channels_last=case.channels_last, device=case.device)
    try:
        found = predicted_max_batch(cfg, budget_bytes)
    except Exception as exc:  # a model the predictor cannot run: the search keeps its default bound
        return DEFAULT_UPPER, {"upper_from": f"default (prediction failed: {type(exc).__name__}: {exc})"[:300]}
    predicted = int(found["predicted_max_batch"])
    upper = max(1, min(DEFAULT_UPPER, HEADROOM * predicted))
    return upper, {"upper_from": f"{HEADROOM} x the predicted largest batch for {budget_bytes} bytes",
                   "predicted_max_batch": predicted, "budget_bytes": int(budget_bytes)}
