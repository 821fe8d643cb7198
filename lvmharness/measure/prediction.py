"""Peak memory of one step, predicted without running it, and the same step measured by running it.

The quantity (prediction and measurement aim at exactly this):

* ``inference``: the model in ``eval()``, one forward under ``torch.no_grad()`` of a ``(B, 3, N, N)`` input;
* ``train``: the model in ``train()``, the step *after* the first (so the optimizer state exists): forward,
  cross-entropy on ``B`` integer labels, backward, ``optimizer.step()``, ``zero_grad(set_to_none=True)``;

and its value is the peak, over that step, of the bytes held by live tensors: parameters, buffers, gradients,
optimizer state, activations and temporaries (the input batch and the labels count as activations).

* predicted (``predict_step``): the step runs under ``FakeTensorMode`` -- the model is built on the meta device
  and given fake storage, so no weight, activation or optimizer byte is allocated; shapes, dtypes, strides, views
  and the lifetime of every tensor are those of the real step because the same Python code runs over the same
  modules. ``accounting.LiveTensorBytes`` adds up the live storages.
* measured (``measure_step``, in a fresh child with ``measure_isolated``): the same function on real tensors,
  with PyTorch's ``MemTracker`` (``torch.distributed._tools.mem_tracker``) as the accountant -- an independent
  implementation of the same bookkeeping, the instrument the prediction is held against. On CUDA the child also
  reads ``torch.cuda.max_memory_allocated`` over the step, which adds what no tensor accountant sees: the
  caching allocator's rounding of every block to 512 bytes (both accountants model that rounding) and
  workspaces kernels allocate internally (cuBLAS, cuDNN, fused attention).

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

from lvmharness.core.parsing import MAX_BATCH_SIZE

if TYPE_CHECKING:
    import torch

MODES = ("inference", "train")
OPTIMIZERS = ("adamw", "sgd")
# The categories of the breakdown (see ``lvmharness.measure.accounting``; repeated here so that reading them
# does not import torch).
CATEGORIES = ("params", "buffers", "grads", "optimizer_state", "activations", "temporaries")
PHASE_ORDER = ("forward", "backward", "optimizer_step", "zero_grad")
# Hyper-parameters of the optimizers (they do not change the memory, but a record should say what ran).
ADAMW_ARGS = {"lr": 1e-4, "weight_decay": 0.05}
SGD_ARGS = {"lr": 0.1, "momentum": 0.9}  # momentum > 0: one buffer per parameter, created by the first step
NUM_LABELS = 1000
FIT_BATCHES = (8, 16)  # the largest-batch search fits the peak's line through these two batches


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
        from lvmharness.core.vocab import DTYPE_NAMES

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

    from lvmharness.runtime.execution import check_dtype_mode

    return check_dtype_mode(cfg.dtype, torch.device(cfg.device))


def _target_device(cfg: StepConfig) -> torch.device:
    from lvmharness.runtime.devices import resolve_device

    return resolve_device(cfg.device)


def optimizer_foreach(device: torch.device) -> bool:
    """Whether torch's default picks the multi-tensor (``foreach``) optimizer kernels for real parameters on
    ``device``: ``_default_to_fused_or_foreach`` in torch/optim/optimizer.py says yes when every parameter is a
    plain Tensor or nn.Parameter on a device of ``_get_foreach_kernels_supported_devices()`` (cuda, xpu, ... not
    cpu). Fake parameters are ``FakeTensor``, which fails that type test, so left to the default a prediction for
    CUDA would model the single-tensor AdamW while the real step runs ``_multi_tensor_adamw``, which holds
    weights-sized temporaries (torch/optim/adamw.py). Both sides pass this choice explicitly."""
    from torch.optim import optimizer as torch_optimizer

    return device.type in torch_optimizer._get_foreach_kernels_supported_devices()


def _make_optimizer(cfg: StepConfig, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    import torch

    foreach = optimizer_foreach(device)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), foreach=foreach, **ADAMW_ARGS)  # type: ignore[arg-type]
    return torch.optim.SGD(model.parameters(), foreach=foreach, **SGD_ARGS)  # type: ignore[arg-type]


def _build_inputs(cfg: StepConfig, size: int, device: torch.device, dtype: torch.dtype,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(cfg.batch_size, 3, size, size, generator=gen).to(device=device, dtype=dtype)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_LABELS, (cfg.batch_size,), generator=gen).to(device)
    return x, y


def _parameters_reached(loss: torch.Tensor) -> set[int]:
    """ids of the leaf tensors a backward from ``loss`` would give a gradient: its AccumulateGrad nodes."""
    reached: set[int] = set()
    seen: set[Any] = set()
    stack = [loss.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        var = getattr(fn, "variable", None)
        if var is not None:
            reached.add(id(var))
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return reached


def _step_loss(cfg: StepConfig, out: Any, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the model's logits against ``y``, the one loss of the train step.

    A model returning several logits in train mode (torchvision's googlenet and inception_v3: the main and the
    auxiliary classifiers) gets the sum of their losses, so every head takes part in the backward as in training;
    a head-less model (timm ``num_classes=0``: pooled features) is trained against labels within its output
    width, so the step described is one that runs. The labels are brought into that width in place (same tensor,
    same bytes): the prediction and the measurement see the same labels.
    """
    import torch
    import torch.nn.functional as F

    from lvmharness.core.errors import ConfigError

    outs = list(out) if isinstance(out, tuple | list) else [out]
    shapes = [tuple(o.shape) if isinstance(o, torch.Tensor) else type(o).__name__ for o in outs]
    if not outs or any(not isinstance(o, torch.Tensor) or o.ndim != 2 or o.shape[1] < 1 for o in outs):
        raise ConfigError(f"{cfg.model}: a train step needs (batch, classes) logits for its cross-entropy loss, but "
                          f"the model returns {shapes}; predict --mode inference, or build it with a classifier head")
    width = min(int(o.shape[1]) for o in outs)
    if width < NUM_LABELS:
        y.remainder_(width)
    loss = F.cross_entropy(outs[0].float(), y)
    for extra in outs[1:]:
        loss = loss + F.cross_entropy(extra.float(), y)
    return loss


def _run_tracked(cfg: StepConfig, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 device: torch.device, *, accountant: str, per_layer: bool = False,
                 before_step: Callable[[], None] | None = None, prime_first_step: bool = False) -> StepMemory:
    """Bring the model to the state before the step, then run the step under an accountant of live bytes.

    The same code runs on fake tensors (prediction, ``accountant="live"``) and on real ones (measurement,
    ``accountant="memtracker"``): that is what makes the two numbers the same quantity.
    """
    import torch

    from lvmharness.measure.accounting import LiveTensorBytes, MemTrackerAccount, saved_for_backward
    from lvmharness.runtime.execution import autocast as amp_context

    _, autocast_dtype = _dtype_mode(cfg)

    def autocast() -> contextlib.AbstractContextManager[Any]:
        return amp_context(device, autocast_dtype)  # the execution vocabulary: the same AMP as the measured cases

    opt: torch.optim.Optimizer | None = None
    if cfg.mode == "train":
        model.train()
        opt = _make_optimizer(cfg, model, device)
        # The first step: it creates the optimizer state the measured step starts with.
        with autocast():
            loss = _step_loss(cfg, model(x), y)
        if prime_first_step:
            # Fake tensors carry no values, so the first step's backward only decides which parameters get a
            # gradient (and so optimizer state): the autograd graph already says that. Zero gradients for exactly
            # those parameters, then the same optimizer.step() creates the same state, at a third of the cost.
            reached = _parameters_reached(loss)
            del loss
            for p in model.parameters():
                if id(p) in reached:
                    p.grad = torch.zeros_like(p)
        else:
            loss.backward()
            del loss
        opt.step()
        opt.zero_grad(set_to_none=True)
    else:
        model.eval()

    if before_step is not None:
        before_step()
    acct = LiveTensorBytes(device) if accountant == "live" else MemTrackerAccount(device)
    acct.track_start(model, opt, x, y)
    if cfg.mode == "inference":
        with acct.phase("forward"), torch.no_grad(), autocast():
            out = model(x)
            del out
    else:
        assert opt is not None
        with acct.phase("forward"), autocast():
            loss = _step_loss(cfg, model(x), y)
        with acct.phase("backward"):
            loss.backward()
            del loss
        with acct.phase("optimizer_step"):
            opt.step()
        with acct.phase("zero_grad"):
            opt.zero_grad(set_to_none=True)
    total, cats, peak_phase, phase_peaks = acct.finish()
    saved: dict[str, int] = {}
    if per_layer:
        # A forward of its own: saved-tensor hooks change when autograd frees what it saved, so they must not
        # run inside the tracked step.
        model.train()
        with saved_for_backward(model, saved), autocast():
            out = model(x)
        del out
    extra: dict[str, Any] = {}
    if opt is not None:  # which optimizer kernels ran: the multi-tensor path holds more temporaries
        extra["optimizer_foreach"] = bool(opt.defaults.get("foreach"))
    return StepMemory(peak_bytes=total, breakdown=cats, peak_phase=peak_phase, phase_peaks=phase_peaks,
                      saved_for_backward=saved, params=sum(p.numel() for p in model.parameters()), extra=extra)


def _meta_model(cfg: StepConfig, size: int) -> torch.nn.Module:
    from lvmharness.models.build import create_model

    return create_model(cfg.model, img_size=size, device="meta")


def _cast(model: torch.nn.Module, cfg: StepConfig, dtype: torch.dtype) -> torch.nn.Module:
    import torch

    model = model.to(dtype=dtype)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def to_fake_storage(model: torch.nn.Module, make: Callable[[torch.Tensor], torch.Tensor]) -> torch.nn.Module:
    """Replace every parameter and buffer by ``make(tensor)``, once per tensor.

    ``Module._apply`` converts per module and per attribute: a submodule shared by several parents
    (CoaT's shared convolutional position encoding) is converted once per parent, and the second swap fails;
    a tensor held by two modules (tied input and output embeddings) becomes two tensors, so its bytes, its
    gradient and its optimizer state would be counted twice. Here the conversion is memoised by tensor identity:
    what the model shares stays shared, exactly as on the real device.
    """
    import torch

    memo: dict[int, torch.Tensor] = {}
    originals: list[torch.Tensor] = []  # alive until the end, so no id in ``memo`` is reused meanwhile
    for module in model.modules():  # each module once, however many parents hold it
        for name, p in module._parameters.items():
            if p is not None:
                if id(p) not in memo:
                    originals.append(p)
                    memo[id(p)] = torch.nn.Parameter(make(p.detach()), requires_grad=p.requires_grad)
                module._parameters[name] = memo[id(p)]  # type: ignore[assignment]
        for name, b in module._buffers.items():
            if b is not None:
                if id(b) not in memo:
                    originals.append(b)
                    memo[id(b)] = make(b)
                module._buffers[name] = memo[id(b)]
        if isinstance(module, torch.nn.RNNBase):
            module._init_flat_weights()  # what RNNBase._apply does: its list of weights follows the new ones
    return model


@contextlib.contextmanager
def _fake_case(cfg: StepConfig) -> Iterator[tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.device, int]]:
    """(model, input, labels, device, img_size) on fake tensors, inside the FakeTensorMode that made them."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from lvmharness.models.build import resolve

    spec = resolve(cfg.model)
    size = cfg.img_size or spec.default_img_size
    device = _target_device(cfg)
    param_dtype, _ = _dtype_mode(cfg)
    # Cast on the meta device (fake parameters cannot be swapped in place), then give the meta tensors fake
    # storage on the target device; empty_strided keeps each tensor's strides (channels_last included). Modules
    # that keep plain tensor attributes computed at build time are converted on first use: allow_non_fake_inputs.
    meta = _cast(_meta_model(cfg, size), cfg, param_dtype)
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = to_fake_storage(meta, lambda t: torch.empty_strided(t.size(), t.stride(), dtype=t.dtype,
                                                                     device=device))
        x, y = _build_inputs(cfg, size, device, param_dtype)
        yield model, x, y, device, size


def predict_step(cfg: StepConfig, *, per_layer: bool = False, accountant: str = "live") -> StepMemory:
    """The step's peak on fake tensors: nothing allocated but metadata. Seconds for ViT-H at 1022 px."""
    import torch

    started = time.perf_counter()
    with _fake_case(cfg) as (model, x, y, device, size):
        result = _run_tracked(cfg, model, x, y, device, accountant=accountant, per_layer=per_layer,
                              prime_first_step=True)
    result.img_size = size
    result.wall_s = time.perf_counter() - started
    result.extra["engine"] = (f"{'live tensor bytes' if accountant == 'live' else 'MemTracker'} under "
                              f"FakeTensorMode (torch {torch.__version__})")
    return result


def predict_saved_for_backward(cfg: StepConfig) -> dict[str, int]:
    """Bytes autograd keeps for backward after one train-mode forward, by module (fake tensors, forward only)."""
    from lvmharness.measure.accounting import saved_for_backward
    from lvmharness.runtime.execution import autocast

    saved: dict[str, int] = {}
    _, autocast_dtype = _dtype_mode(cfg)
    with _fake_case(cfg) as (model, x, _y, device, _size):
        model.train()
        with saved_for_backward(model, saved), autocast(device, autocast_dtype):
            out = model(x)
        del out
    return saved


def record_values(pred: StepMemory, measured: dict[str, Any] | None = None) -> dict[str, Any]:
    """The flat values of a ``memory_predicted`` record: the prediction, and the measurement with the error."""
    values: dict[str, Any] = {"predicted_peak_bytes": pred.peak_bytes, "prediction_s": pred.wall_s}
    values.update({f"predicted_{cat}_bytes": pred.breakdown[cat] for cat in CATEGORIES})
    if measured is not None:
        values["measured_peak_bytes"] = measured["peak_bytes"]
        values["prediction_rel_error"] = rel_error(pred.peak_bytes, measured["peak_bytes"])
        cuda = measured.get("extra", {}).get("cuda_max_memory_allocated_bytes")
        if cuda:
            values["cuda_max_memory_allocated_bytes"] = cuda
            values["prediction_rel_error_vs_cuda_allocated"] = rel_error(pred.peak_bytes, cuda)
    return values


def measure_step(cfg: StepConfig) -> StepMemory:
    """The same step on real tensors in this process (meant for a fresh child: see ``measure_isolated``)."""
    import torch

    from lvmharness.models.build import create_model, resolve

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

    result = _run_tracked(cfg, model, x, y, device, accountant="memtracker",
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
    return {"status": res.status, "error": res.error, "memory": res.values(), "provenance": res.provenance()}


def _child_main(arg: str) -> int:
    from lvmharness.measure.memory import report_child

    cfg = StepConfig(**json.loads(arg))
    return report_child(lambda: measure_step(cfg).to_dict())


# --- the largest batch under a budget ----------------------------------------------------------------------------


def predicted_max_batch(cfg: StepConfig, budget_bytes: int, *, upper: int = MAX_BATCH_SIZE,
                        predict: Callable[[StepConfig], StepMemory] | None = None) -> dict[str, Any]:
    """Largest batch whose predicted peak is <= ``budget_bytes``.

    The live bytes at every moment of the step are affine in the batch (weights, gradients and optimizer state
    do not depend on it; every activation is proportional to it), so the peak, their maximum over the step, is
    convex and piecewise affine: at small batches the optimizer step or the end of the backward (all gradients
    alive) holds it; from a few samples on, the start of the backward (all activations alive) does, and its line
    is the one a budget meets. Two fake runs at batches 8 and 16 give that line's intercept and slope; the answer
    is confirmed by fake runs at the answer (must fit) and the answer + 1 (must not). If the confirmation misses
    (the answer lies on an earlier piece), secant steps through the nearest probes and then bisection between a
    fitting and a non-fitting batch finish the search. Every probe is returned.

    The search never goes beyond ``upper`` (by default the largest batch the command line accepts): when ``upper``
    itself fits, the answer is ``upper`` with ``hit_upper_bound`` True, a lower bound of the true answer, which
    callers must say.
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

    b1, b2 = FIT_BATCHES
    slope = (peak(b2) - peak(b1)) // (b2 - b1)
    intercept = peak(b1) - slope * b1
    fit = {"intercept_bytes": intercept, "bytes_per_sample": slope, "from_batches": [b1, b2]}
    if not fits(1):
        return {"predicted_max_batch": 0, "budget_bytes": budget_bytes, "fit": fit,
                "probes": sorted(probes.items()), "confirmed": True, "peak_at_batch_1": probes[1]}
    if slope <= 0:
        raise ValueError(f"the predicted peak does not grow with the batch ({probes[b1]} -> {probes[b2]} bytes): "
                         "no batch limit")
    lo, hi = 1, None  # lo fits; hi (when known) does not
    guess = max(1, min(upper, (budget_bytes - intercept) // slope))
    for _ in range(4):  # secant steps through the probes nearest the boundary
        if fits(guess):
            lo = max(lo, guess)
            if not fits(guess + 1):
                hi = guess + 1
                break
            lo = min(guess + 1, upper)
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
            if fits(upper):
                return {"predicted_max_batch": upper, "budget_bytes": budget_bytes, "fit": fit,
                        "hit_upper_bound": True, "upper_bound": upper, "probes": sorted(probes.items()),
                        "confirmed": False}
            hi = upper
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
            "on_the_fitted_line": peak(lo) == intercept + slope * lo}


def device_budget(device: str) -> dict[str, int]:
    """What a CUDA device leaves for tensors: free memory after this process's context exists, measured."""
    import torch

    from lvmharness.runtime.devices import resolve_device

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
    from lvmharness.core.stats import loglog_slope

    if len(set(sizes)) < 2:
        raise ValueError("activation scaling needs at least two distinct sizes")
    per_size = [sum(predict_saved_for_backward(
        StepConfig(model, batch_size=batch_size, img_size=s, mode="train", dtype=dtype)).values()) for s in sizes]
    slope = loglog_slope((s * s, b) for s, b in zip(sizes, per_size, strict=True))
    assert slope is not None
    return {"img_sizes": list(sizes), "activation_bytes": per_size, "exponent_vs_pixels": slope,
            "quantity": "bytes of distinct storages autograd saves for backward in one train-mode forward"}


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
