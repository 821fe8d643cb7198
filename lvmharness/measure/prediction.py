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
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from lvmharness.core import child
from lvmharness.core.memory_categories import CATEGORIES
from lvmharness.measure.step import StepConfig, StepMemory, build_inputs, dtype_mode, run_tracked, target_device

if TYPE_CHECKING:
    import torch

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
    device = target_device(cfg)
    param_dtype, _ = dtype_mode(cfg)
    # Cast on the meta device (fake parameters cannot be swapped in place), then give the meta tensors fake
    # storage on the target device; empty_strided keeps each tensor's strides (channels_last included). Modules
    # that keep plain tensor attributes computed at build time are converted on first use: allow_non_fake_inputs.
    meta = _cast(_meta_model(cfg, size), cfg, param_dtype)
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = to_fake_storage(meta, lambda t: torch.empty_strided(t.size(), t.stride(), dtype=t.dtype,
                                                                     device=device))
        x, y = build_inputs(cfg, size, device, param_dtype)
        yield model, x, y, device, size


def predict_step(cfg: StepConfig, *, per_layer: bool = False, accountant: str = "live") -> StepMemory:
    """The step's peak on fake tensors: nothing allocated but metadata. Seconds for ViT-H at 1022 px."""
    import torch

    started = time.perf_counter()
    with _fake_case(cfg) as (model, x, y, device, size):
        result = run_tracked(cfg, model, x, y, device, accountant=accountant, per_layer=per_layer,
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
    _, autocast_dtype = dtype_mode(cfg)
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
    device = target_device(cfg)
    param_dtype, _ = dtype_mode(cfg)
    torch.manual_seed(0)
    model = _cast(create_model(spec, img_size=size, device=device), cfg, param_dtype)
    x, y = build_inputs(cfg, size, device, param_dtype)
    def reset_allocator_peak() -> None:  # the allocator's peak over the measured step alone
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)

    result = run_tracked(cfg, model, x, y, device, accountant="memtracker",
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
    res = child.run_module("lvmharness.measure.prediction", asdict(cfg), timeout_s=timeout_s)
    return {"status": res.status, "error": res.error, "memory": res.values(), "provenance": res.provenance()}


def _prepare_child(payload: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    cfg = StepConfig(**payload)
    return lambda: measure_step(cfg).to_dict()


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
    sys.exit(child.main(sys.argv, _prepare_child))
