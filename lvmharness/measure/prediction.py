"""Peak memory of one step, predicted without running it, and the same step measured by running it.

The quantity (prediction and measurement aim at exactly this):

* ``inference``: the model in ``eval()``, one forward under ``torch.no_grad()`` of a ``(B, 3, N, N)`` input;
* ``train``: the model in ``train()``, the step *after* the first (so the optimizer state exists): forward,
  cross-entropy on ``B`` integer labels, backward, ``optimizer.step()``, ``zero_grad(set_to_none=True)``;

and its value is the peak, over that step, of the bytes held by live tensors: parameters, buffers, gradients,
optimizer state, activations and temporaries (the input batch and the labels count as activations). PyTorch's
``MemTracker`` (``torch.distributed._tools.mem_tracker``) is the accountant on both sides: it sees every tensor an
op dispatches, follows each storage until it is freed, and files it under one of those categories.

* predicted: the step runs under ``FakeTensorMode`` -- the model is built on the meta device and given fake
  storage, so no weight, activation or optimizer byte is allocated; shapes, dtypes, strides, views and the
  lifetime of every tensor are those of the real step because the same Python code runs over the same modules.
* measured: the same function runs on real tensors (``measure_step``, meant for a fresh child process, see
  ``measure_isolated``) and MemTracker reads the real storages. On CUDA it also reads
  ``torch.cuda.max_memory_allocated`` over the step, which adds what MemTracker cannot see: the caching
  allocator's rounding of every block to 512 bytes (MemTracker models that rounding) and workspaces kernels
  allocate internally (cuBLAS, cuDNN, fused attention), which are not tensors an op returns.

What neither side counts: memory that is not a tensor storage (the CUDA context, the CPU allocator's own
fragmentation, oneDNN scratch pads); on the CPU those are the gap between this number and a process's RSS.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

MODES = ("inference", "train")
OPTIMIZERS = ("adamw", "sgd")
CATEGORIES = ("params", "buffers", "grads", "optimizer_state", "activations", "temporaries")
# MemTracker's reference types -> our category names. "Other" is what ``track_external`` files plain tensors
# under: here only the input batch and the labels, which a step holds like an activation.
_MEMTRACKER_CATEGORY = {
    "Parameter": "params", "Buffer": "buffers", "Gradient": "grads", "Optstate": "optimizer_state",
    "Activation": "activations", "Other": "activations", "Temp": "temporaries",
}
PHASE_ORDER = ("forward", "backward", "optimizer_step", "zero_grad")
# Hyper-parameters of the optimizers (they do not change the memory, but a record should say what ran).
ADAMW_ARGS = {"lr": 1e-4, "weight_decay": 0.05}
SGD_ARGS = {"lr": 0.1, "momentum": 0.9}  # momentum > 0: one buffer per parameter, created by the first step
NUM_LABELS = 1000


@dataclass(frozen=True)
class StepConfig:
    """One step whose peak is predicted or measured; every field changes the number."""

    model: str
    batch_size: int = 1
    img_size: int | None = None  # None: the model's default size
    mode: str = "train"
    dtype: str = "fp32"  # fp32 | bf16 | fp16 (weights and input) | amp_bf16 | amp_fp16 (fp32 weights, autocast)
    optimizer: str = "adamw"
    channels_last: bool = False
    device: str = "cpu"

    def __post_init__(self) -> None:
        from lvmharness.results import DTYPE_NAMES

        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: valid modes are {', '.join(MODES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r}: valid optimizers are {', '.join(OPTIMIZERS)}")
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype {self.dtype!r}: valid dtypes are {', '.join(DTYPE_NAMES)}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch size must be a whole number >= 1, got {self.batch_size!r}")
        if self.img_size is not None and self.img_size < 1:
            raise ValueError(f"img_size must be >= 1, got {self.img_size}")

    def quantity(self) -> str:
        """The measured quantity a prediction for this config aims at, in words."""
        n = self.img_size if self.img_size is not None else "N"
        what = (f"MemTracker peak of live tensor bytes over one {self.mode} step of {self.model}, "
                f"batch {self.batch_size}, {n} px, {self.dtype}")
        if self.channels_last:
            what += ", channels_last"
        if self.mode == "inference":
            return what + ": eval(), one forward under torch.no_grad()"
        opt = "AdamW" if self.optimizer == "adamw" else "SGD(momentum=0.9)"
        return (what + f": train(), the step after the first: forward, cross-entropy on integer labels, "
                       f"backward, {opt}.step(), zero_grad(set_to_none=True)")


@dataclass
class StepMemory:
    """What one tracked step held at its peak."""

    peak_bytes: int
    breakdown: dict[str, int]  # category -> bytes at the moment of the peak (sums to peak_bytes)
    peak_phase: str  # forward | backward | optimizer_step | zero_grad: the phase during which the peak was reached
    phase_peaks: dict[str, int]  # running peak at the end of each phase
    saved_for_backward: dict[str, int] = field(default_factory=dict)  # module path -> bytes (train only)
    img_size: int = 0
    params: int = 0  # number of parameters (elements)
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the step, shared by prediction (fake tensors) and measurement (real tensors) -----------------------------------


def _dtype_mode(cfg: StepConfig) -> tuple[torch.dtype, torch.dtype | None]:
    import torch

    from lvmharness.execution import check_dtype_mode

    return check_dtype_mode(cfg.dtype, torch.device(cfg.device))


def _target_device(cfg: StepConfig) -> torch.device:
    from lvmharness.devices import resolve_device

    return resolve_device(cfg.device)


def _make_optimizer(cfg: StepConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    import torch

    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), **ADAMW_ARGS)  # type: ignore[arg-type]
    return torch.optim.SGD(model.parameters(), **SGD_ARGS)  # type: ignore[arg-type]


class _ModuleStack:
    """The innermost running module, by forward pre/post hooks: whom a tensor saved for backward belongs to."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.stack: list[str] = []
        self.handles: list[Any] = []
        for name, mod in model.named_modules():
            self.handles.append(mod.register_forward_pre_hook(self._push(name)))
            self.handles.append(mod.register_forward_hook(self._pop))

    def _push(self, name: str) -> Callable[..., None]:
        def hook(_mod: Any, _args: Any) -> None:
            self.stack.append(name)
        return hook

    def _pop(self, _mod: Any, _args: Any, _out: Any) -> None:
        self.stack.pop()

    def current(self) -> str:
        return self.stack[-1] if self.stack else ""

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@contextlib.contextmanager
def _saved_tensor_accounting(model: torch.nn.Module, into: dict[str, int]) -> Iterator[None]:
    """For the per-layer view only (never inside a tracked step: a pack hook holds what it packs until the graph
    is freed, which moves the peak). Attribute each storage autograd saves for backward to the innermost module running when it was saved.

    A storage saved twice (a block's output saved by the next layer's norm and by the residual add) is counted
    once, for the first saver; parameters and buffers are weights, not activations, and are left out.
    """
    import torch

    stack = _ModuleStack(model)
    weights = {id(t.untyped_storage()) for t in (*model.parameters(), *model.buffers())}
    # Storages by identity; the list keeps them alive so an id cannot be reused (autograd keeps them anyway).
    seen: dict[int, Any] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        key = id(st)
        if key not in weights and key not in seen:
            seen[key] = st
            into[stack.current()] = into.get(stack.current(), 0) + st.nbytes()
        return t

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield
    finally:
        stack.remove()


def _snapshot(tracker: Any) -> tuple[int, dict[str, int]]:
    """(total, by category) of MemTracker's peak snapshot, summed over devices."""
    total = 0
    cats = dict.fromkeys(CATEGORIES, 0)
    for dev_snap in tracker.get_tracker_snapshot("peak").values():
        for key, val in dev_snap.items():
            name = getattr(key, "value", key)
            if name == "Total":
                total += int(val)
            else:
                cats[_MEMTRACKER_CATEGORY[str(name)]] += int(val)
    return total, cats


def _build_inputs(cfg: StepConfig, size: int, device: torch.device, dtype: torch.dtype,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(cfg.batch_size, 3, size, size, generator=gen).to(device=device, dtype=dtype)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_LABELS, (cfg.batch_size,), generator=gen).to(device)
    return x, y


def _run_tracked(cfg: StepConfig, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 device: torch.device, *, per_layer: bool,
                 before_step: Callable[[], None] | None = None) -> StepMemory:
    """Bring the model to the state before the step, then run the step under MemTracker.

    The same code runs on fake tensors (prediction) and on real ones (measurement): that is what makes the two
    numbers the same quantity.
    """
    import torch
    import torch.nn.functional as F
    from torch.distributed._tools.mem_tracker import MemTracker

    _, autocast_dtype = _dtype_mode(cfg)

    def autocast() -> Any:
        if autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=autocast_dtype)

    opt: torch.optim.Optimizer | None = None
    if cfg.mode == "train":
        model.train()
        opt = _make_optimizer(cfg, model)
        # The first step: it creates the optimizer state the measured step starts with.
        with autocast():
            F.cross_entropy(model(x).float(), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    else:
        model.eval()

    saved: dict[str, int] = {}
    phase_peaks: dict[str, int] = {}
    if before_step is not None:
        before_step()
    tracker = MemTracker()
    tracker.track_external(model, *([opt] if opt is not None else []), x, y)
    with tracker:
        if cfg.mode == "inference":
            with torch.no_grad(), autocast():
                out = model(x)
            phase_peaks["forward"] = _snapshot(tracker)[0]
            del out
        else:
            assert opt is not None
            with autocast():
                loss = F.cross_entropy(model(x).float(), y)
            phase_peaks["forward"] = _snapshot(tracker)[0]
            loss.backward()
            del loss
            phase_peaks["backward"] = _snapshot(tracker)[0]
            opt.step()
            phase_peaks["optimizer_step"] = _snapshot(tracker)[0]
            opt.zero_grad(set_to_none=True)
            phase_peaks["zero_grad"] = _snapshot(tracker)[0]
    if per_layer:
        # A forward of its own: saved-tensor hooks change when autograd frees what it saved, so they must not
        # run inside the tracked step.
        model.train()
        with _saved_tensor_accounting(model, saved), autocast():
            out = model(x)
        del out
    total, cats = _snapshot(tracker)
    peak_phase = next(p for p in PHASE_ORDER if phase_peaks.get(p) == total)
    return StepMemory(peak_bytes=total, breakdown=cats, peak_phase=peak_phase, phase_peaks=phase_peaks,
                      saved_for_backward=saved, params=sum(p.numel() for p in model.parameters()))


def _meta_model(cfg: StepConfig, size: int) -> torch.nn.Module:
    from lvmharness.models import create_model

    return create_model(cfg.model, img_size=size, device="meta")


def _cast(model: torch.nn.Module, cfg: StepConfig, dtype: torch.dtype) -> torch.nn.Module:
    import torch

    model = model.to(dtype=dtype)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def predict_step(cfg: StepConfig, *, per_layer: bool = False) -> StepMemory:
    """The step's peak on fake tensors: nothing allocated but metadata. Seconds for ViT-H at 1024 px."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from lvmharness.models import resolve

    started = time.perf_counter()
    spec = resolve(cfg.model)
    size = cfg.img_size or spec.default_img_size
    device = _target_device(cfg)
    param_dtype, _ = _dtype_mode(cfg)
    # Cast on the meta device (fake parameters cannot be swapped in place), then give the meta tensors fake
    # storage on the target device; empty_like keeps each tensor's strides (channels_last included). Modules
    # that keep plain tensor attributes computed at build time are converted on first use: allow_non_fake_inputs.
    meta = _cast(_meta_model(cfg, size), cfg, param_dtype)
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = meta.to_empty(device=device)
        x, y = _build_inputs(cfg, size, device, param_dtype)
        result = _run_tracked(cfg, model, x, y, device, per_layer=per_layer)
    result.img_size = size
    result.wall_s = time.perf_counter() - started
    result.extra["engine"] = f"MemTracker under FakeTensorMode (torch {torch.__version__})"
    return result


def measure_step(cfg: StepConfig) -> StepMemory:
    """The same step on real tensors in this process (meant for a fresh child: see ``measure_isolated``)."""
    import torch

    from lvmharness.models import create_model, resolve

    started = time.perf_counter()
    spec = resolve(cfg.model)
    size = cfg.img_size or spec.default_img_size
    device = _target_device(cfg)
    param_dtype, _ = _dtype_mode(cfg)
    torch.manual_seed(0)
    model = _cast(create_model(spec, img_size=size, device=device), cfg, param_dtype)
    x, y = _build_inputs(cfg, size, device, param_dtype)
    def reset_allocator_peak() -> None:  # the allocator's peak over the measured step alone
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)

    result = _run_tracked(cfg, model, x, y, device, per_layer=False,
                          before_step=reset_allocator_peak if device.type == "cuda" else None)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        result.extra["cuda_max_memory_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
        result.extra["cuda_max_memory_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
    result.img_size = size
    result.wall_s = time.perf_counter() - started
    result.extra["engine"] = f"MemTracker on real tensors (torch {torch.__version__}, {device})"
    return result


# --- comparing ---------------------------------------------------------------------------------------------------


def rel_error(predicted: float, measured: float) -> float:
    """(predicted - measured) / measured: positive = the prediction is above the measurement."""
    if measured <= 0:
        raise ValueError(f"measured value must be positive, got {measured}")
    return (predicted - measured) / measured


def measure_isolated(cfg: StepConfig, *, timeout_s: float = 900.0) -> dict[str, Any]:
    """Run ``measure_step`` in a fresh Python process; {"status", "error", "memory"} (never raises for the child)."""
    from lvmharness.measure.memory import run_child

    res = run_child("lvmharness.measure.prediction", asdict(cfg), timeout_s=timeout_s)
    return {"status": res.status, "error": res.error, "memory": res.values, "provenance": res.provenance}


def _child_main(arg: str) -> int:
    from lvmharness.measure.memory import report_child

    cfg = StepConfig(**json.loads(arg))
    return report_child(lambda: measure_step(cfg).to_dict())


# --- the largest batch under a budget ----------------------------------------------------------------------------


def predicted_max_batch(cfg: StepConfig, budget_bytes: int, *, upper: int = 1 << 16,
                        predict: Callable[[StepConfig], StepMemory] | None = None) -> dict[str, Any]:
    """Largest batch whose predicted peak is <= ``budget_bytes``.

    For these models the peak is affine in the batch (weights, gradients and optimizer state do not depend on
    it; every activation is proportional to it), so two fake runs give intercept and slope; the answer is then
    confirmed by fake runs at the answer (must fit) and the answer + 1 (must not). Where the peak is only
    piecewise affine (the phase holding the peak changes with the batch), the confirmation misses and the fit is
    redone through the two nearest probes, then, if needed, bisection finishes between a fitting and a
    non-fitting batch. Every probe is returned.
    """
    if budget_bytes <= 0:
        raise ValueError(f"budget must be positive, got {budget_bytes} bytes")
    run = predict or predict_step
    probes: dict[int, int] = {}

    def peak(b: int) -> int:
        if b not in probes:
            probes[b] = run(replace(cfg, batch_size=b)).peak_bytes
        return probes[b]

    def fits(b: int) -> bool:
        return peak(b) <= budget_bytes

    b1, b2 = 1, 2
    p1, p2 = peak(b1), peak(b2)
    slope = p2 - p1
    intercept = p1 - slope * b1
    fit = {"intercept_bytes": intercept, "bytes_per_sample": slope, "from_batches": [b1, b2]}
    if not fits(1):
        return {"predicted_max_batch": 0, "budget_bytes": budget_bytes, "fit": fit,
                "probes": sorted(probes.items()), "confirmed": True, "peak_at_batch_1": p1}
    if slope <= 0:
        raise ValueError(f"the predicted peak does not grow with the batch ({p1} -> {p2} bytes): no batch limit")
    lo, hi = 1, None  # lo fits; hi (when known) does not
    guess = max(1, min(upper, (budget_bytes - intercept) // slope))
    for _ in range(4):  # secant steps through the probes nearest the boundary
        if fits(guess):
            lo = max(lo, guess)
            if not fits(guess + 1):
                hi = guess + 1
                break
            lo = guess + 1
        else:
            hi = guess if hi is None else min(hi, guess)
        near = sorted(probes, key=lambda b: abs(b - guess))[:2]
        if len(near) < 2 or near[0] == near[1]:
            break
        s = (probes[near[0]] - probes[near[1]]) / (near[0] - near[1])
        if s <= 0:
            break
        nxt = int(near[0] + (budget_bytes - probes[near[0]]) // s)
        nxt = max(1, min(upper, nxt))
        if nxt == guess:
            break
        guess = nxt
    if hi is None:  # grow until something does not fit
        hi = max(lo * 2, 2)
        while hi <= upper and fits(hi):
            lo, hi = hi, hi * 2
        if hi > upper:
            return {"predicted_max_batch": lo, "budget_bytes": budget_bytes, "fit": fit, "hit_upper_bound": True,
                    "probes": sorted(probes.items()), "confirmed": False}
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    confirmed = fits(lo) and not fits(lo + 1)
    return {"predicted_max_batch": lo, "budget_bytes": budget_bytes, "fit": fit,
            "predicted_peak_at_max_bytes": peak(lo), "predicted_peak_at_next_bytes": peak(lo + 1),
            "probes": sorted(probes.items()), "confirmed": confirmed,
            "affine_exact": peak(lo) == intercept + slope * lo}


def device_budget(device: str) -> dict[str, int]:
    """What a CUDA device leaves for tensors: free memory after this process's context exists, measured."""
    import torch

    from lvmharness.devices import resolve_device

    dev = resolve_device(device)
    if dev.type != "cuda":
        raise ValueError(f"--budget {device}: a device budget needs a CUDA device; give bytes for others, e.g. 24GiB")
    torch.cuda.init()
    torch.empty(1, device=dev)  # creates the context
    free, total = torch.cuda.mem_get_info(dev)
    return {"budget_bytes": int(free), "total_bytes": int(total), "context_and_others_bytes": int(total - free)}


# --- activation memory against resolution ------------------------------------------------------------------------


def activation_scaling(model: str, sizes: list[int], *, batch_size: int = 1, dtype: str = "fp32",
                       ) -> dict[str, Any]:
    """Bytes saved for backward (train mode) at each size and the fitted exponent against pixels.

    1.0 = linear in pixels (convolutions, windowed attention, fused attention kernels that keep no score
    matrix); → 2.0 where an attention score matrix over all tokens is kept for backward.
    """
    from lvmharness.stats import loglog_slope

    if len(set(sizes)) < 2:
        raise ValueError("activation scaling needs at least two distinct sizes")
    per_size: list[int] = []
    for s in sizes:
        mem = predict_step(StepConfig(model, batch_size=batch_size, img_size=s, mode="train", dtype=dtype),
                           per_layer=True)
        per_size.append(sum(mem.saved_for_backward.values()))
    slope = loglog_slope((s * s, b) for s, b in zip(sizes, per_size, strict=True))
    assert slope is not None
    return {"img_sizes": list(sizes), "activation_bytes": per_size, "exponent_vs_pixels": slope,
            "quantity": "bytes of distinct storages autograd saves for backward in one train-mode forward"}


def fmt_bytes(n: float) -> str:
    """Bytes for people: binary units, two decimals."""
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{int(n)} B"


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
