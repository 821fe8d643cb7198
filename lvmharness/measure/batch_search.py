"""The largest batch that fits: one search (doubling, then bisection) over two ways of asking "does it fit?".

* measured (:func:`max_batch`): each probe runs the case in its own fresh child process (``memory.run_isolated``)
  under the case's cap or the device's memory; an OOM says "no";
* predicted (:func:`predicted_max_batch`): each probe is a prediction on fake tensors (seconds, nothing allocated);
  a peak above the budget says "no". A fitted line and secant steps land near the answer first, so the shared
  search only finishes the job.

:func:`search_upper` bounds the measured search on CUDA by the predicted answer, so the doubling does not probe
batches far past the device's memory one child process at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from lvmharness.core.errors import BadValueError
from lvmharness.core.parsing import MAX_BATCH_SIZE
from lvmharness.measure import prediction
from lvmharness.measure.memory import MemoryCase, run_isolated
from lvmharness.measure.step import StepConfig, StepMemory

DEFAULT_UPPER = 4096  # where the measured search stops doubling without a better bound
HEADROOM = 2  # on CUDA the doubling stops at HEADROOM x the predicted largest batch
FIT_BATCHES = (8, 16)  # the predicted search fits the peak's line through these two batches
SECANT_STEPS = 4


def largest_fitting(fits: Callable[[int], bool], *, lo: int, upper: int, hi: int | None = None,
                    ) -> tuple[int, int | None]:
    """(largest batch that fits, smallest that does not, or None when ``upper`` fits).

    ``lo`` is known to fit; ``hi``, when given, is known not to. Without ``hi`` the batch doubles from ``lo``
    (the last step clipped to ``upper``) until one does not fit; then bisection between the two. ``fits`` is
    called once per batch in the order a reader of the probes would expect: ascending, then halving the gap.
    """
    if hi is None:
        while lo < upper:
            nxt = min(lo * 2, upper)
            if not fits(nxt):
                hi = nxt
                break
            lo = nxt
        if hi is None:
            return lo, None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo, hi


# --- measured -----------------------------------------------------------------------------------------------------


def max_batch(
    template: MemoryCase,
    *,
    start: int = 1,
    upper: int = DEFAULT_UPPER,
    timeout_s: float = 900.0,
) -> dict[str, Any]:
    """Largest batch whose case runs without OOM: doubling from ``start``, then bisection. Each probe is its own
    isolated child. Needs a cap (``mem_limit_bytes``) on CPU, where the machine's RAM is no useful limit."""
    if template.mem_limit_bytes is None and template.device.startswith("cpu"):
        raise BadValueError("max batch search on cpu needs a memory cap (--lvm-mem-limit, e.g. 2GiB)")
    probes: list[list[Any]] = []

    def fits(batch: int) -> bool:
        res = run_isolated(replace(template, batch_size=batch), timeout_s=timeout_s)
        probes.append([batch, res.status])
        if res.status == "error":
            raise RuntimeError(f"probe at batch {batch} failed: {res.error}")
        return res.status == "ok"

    if not fits(start):
        return {"max_batch_size": 0, "first_oom_batch": start, "probes": probes}
    ok, bad = largest_fitting(fits, lo=start, upper=upper)
    if bad is None:
        return {"max_batch_size": ok, "first_oom_batch": None, "probes": probes, "hit_upper_bound": True}
    return {"max_batch_size": ok, "first_oom_batch": bad, "probes": probes}


def device_budget(device: str) -> dict[str, int]:
    """What a CUDA device leaves for tensors: free memory after this process's context exists, measured."""
    import torch

    from lvmharness.runtime.devices import resolve_device

    dev = resolve_device(device)
    if dev.type != "cuda":
        raise BadValueError(f"--budget {device}: a device budget needs a CUDA device; give bytes for others, "
                            "e.g. 24GiB")
    torch.cuda.init()
    torch.empty(1, device=dev)  # creates the context
    free, total = torch.cuda.mem_get_info(dev)
    return {"budget_bytes": int(free), "total_bytes": int(total), "context_and_others_bytes": int(total - free)}


def search_upper(case: MemoryCase, budget_bytes: int | None = None) -> tuple[int, dict[str, Any]]:
    """(upper bound for the measured search, how it was found). ``budget_bytes``: the memory to fit in; by default
    the CUDA device's free memory (``mem_get_info``), or the case's cap when it has one.

    Without a cap, the measured search doubles up to 4096, one child per probe; on a GPU with 100+ GiB free a small
    model fits every batch and the search spends minutes to learn nothing past the bound. The measured peak adds
    allocator rounding and kernel workspaces to the predicted live bytes, so the measured answer lies below the
    predicted one; twice the predicted answer leaves room for a prediction that is off."""
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


# --- predicted ----------------------------------------------------------------------------------------------------


class _Peaks:
    """The predicted peak at each batch, each batch predicted once; ``probes`` is what was asked."""

    def __init__(self, cfg: StepConfig, run: Callable[[StepConfig], StepMemory]) -> None:
        self.cfg, self.run = cfg, run
        self.probes: dict[int, int] = {}

    def __call__(self, b: int) -> int:
        if b not in self.probes:
            self.probes[b] = self.run(replace(self.cfg, batch_size=b)).peak_bytes
        return self.probes[b]


def _secant(peak: _Peaks, budget: int, guess: int, upper: int) -> tuple[int, int | None]:
    """(a batch that fits, one that does not or None) from secant steps through the probes nearest the boundary,
    starting at ``guess`` (the fitted line's answer)."""
    lo, hi = 1, None  # lo fits; hi (when known) does not
    probes = peak.probes
    for _ in range(SECANT_STEPS):
        if peak(guess) <= budget:
            lo = max(lo, guess)
            if peak(guess + 1) > budget:
                return lo, guess + 1
            lo = min(guess + 1, upper)
        else:
            hi = guess if hi is None else min(hi, guess)
        near = sorted(probes, key=lambda b: abs(b - guess))[:2]
        if len(near) < 2 or near[0] == near[1]:
            break
        s = (probes[near[0]] - probes[near[1]]) / (near[0] - near[1])
        if s <= 0:
            break
        nxt = max(1, min(upper, int(near[0] + (budget - probes[near[0]]) // s)))
        if nxt == guess:
            break
        guess = nxt
    return lo, hi


def predicted_max_batch(cfg: StepConfig, budget_bytes: int, *, upper: int = MAX_BATCH_SIZE,
                        predict: Callable[[StepConfig], StepMemory] | None = None) -> dict[str, Any]:
    """Largest batch whose predicted peak is <= ``budget_bytes``.

    The live bytes at every moment of the step are affine in the batch (weights, gradients and optimizer state
    do not depend on it; every activation is proportional to it), so the peak, their maximum over the step, is
    convex and piecewise affine: at small batches the optimizer step or the end of the backward (all gradients
    alive) holds it; from a few samples on, the start of the backward (all activations alive) does, and its line
    is the one a budget meets. Two fake runs at batches 8 and 16 give that line's intercept and slope; the answer
    is confirmed by fake runs at the answer (must fit) and the answer + 1 (must not). If the confirmation misses
    (the answer lies on an earlier piece), secant steps through the nearest probes and then the shared search
    (:func:`largest_fitting`) finish it. Every probe is returned.

    The search never goes beyond ``upper`` (by default the largest batch the command line accepts): when ``upper``
    itself fits, the answer is ``upper`` with ``hit_upper_bound`` True, a lower bound of the true answer, which
    callers must say.
    """
    if budget_bytes <= 0:
        raise ValueError(f"budget must be positive, got {budget_bytes} bytes")
    peak = _Peaks(cfg, predict or prediction.predict_step)
    b1, b2 = FIT_BATCHES
    slope = (peak(b2) - peak(b1)) // (b2 - b1)
    intercept = peak(b1) - slope * b1
    head: dict[str, Any] = {"budget_bytes": budget_bytes,
                            "fit": {"intercept_bytes": intercept, "bytes_per_sample": slope, "from_batches": [b1, b2]}}
    if peak(1) > budget_bytes:
        return {"predicted_max_batch": 0, **head, "probes": sorted(peak.probes.items()), "confirmed": True,
                "peak_at_batch_1": peak.probes[1]}
    if slope <= 0:
        raise ValueError(f"the predicted peak does not grow with the batch ({peak.probes[b1]} -> "
                         f"{peak.probes[b2]} bytes): no batch limit")
    guess = max(1, min(upper, (budget_bytes - intercept) // slope))
    lo, hi = _secant(peak, budget_bytes, guess, upper)
    lo, hi = largest_fitting(lambda b: peak(b) <= budget_bytes, lo=lo, upper=upper, hi=hi)
    if hi is None:
        return {"predicted_max_batch": upper, **head, "hit_upper_bound": True, "upper_bound": upper,
                "probes": sorted(peak.probes.items()), "confirmed": False}
    confirmed = peak(lo) <= budget_bytes and not peak(lo + 1) <= budget_bytes
    return {"predicted_max_batch": lo, **head,
            "predicted_peak_at_max_bytes": peak(lo), "predicted_peak_at_next_bytes": peak(lo + 1),
            "probes": sorted(peak.probes.items()), "confirmed": confirmed,
            "on_the_fitted_line": peak(lo) == intercept + slope * lo}
