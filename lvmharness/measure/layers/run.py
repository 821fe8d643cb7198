"""The per-layer pass: profile a few steps with a range per module call, count FLOPs and bytes, build the document.

A pass of its own, never inside timed rounds: the profiler and the hooks cost time. The same step is timed without
profiler and hooks (or its p50 is given, from the bench's timed rounds) as the reference the tree is held against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from lvmharness.core.errors import UserError
from lvmharness.measure.budget import TimingConfig
from lvmharness.measure.contention import Window
from lvmharness.measure.flops import count_run
from lvmharness.measure.latency import Timer
from lvmharness.measure.layers.attribution import STEP_RANGE, StepTimes, attribute
from lvmharness.measure.layers.document import build_document
from lvmharness.measure.layers.hooks import module_ranges
from lvmharness.measure.layers.traffic import OpTraffic, forward_traffic
from lvmharness.measure.peak import probe_peaks
from lvmharness.models.build import create_model, resolve
from lvmharness.runtime.devices import resolve_device, synchronizer
from lvmharness.runtime.execution import ExecOptions, Prepared

MODES = ("inference", "train")


class LayerTimingError(UserError, ValueError):
    """A per-layer measurement that cannot be made as asked (compiled model, unknown mode, zero steps)."""


# Why MPS is refused: the profiler has no MPS device clock, so an op's time there would be the CPU self time of
# encoding the op into Metal's command buffer, which returns before the GPU runs it (an asynchronous backend), not
# the op's time. Refused until torch.profiler reports MPS kernel time.
MPS_REFUSAL = ("time per layer is not available on MPS: the profiler has no MPS device clock, so op times there "
               "would be CPU encoding times, not kernel times; use --device cpu or cuda")


def refuse_mps(device: torch.device) -> None:
    if device.type == "mps":
        raise LayerTimingError(MPS_REFUSAL)


def step_function(prepared: Prepared, x: torch.Tensor, mode: str) -> Callable[[], None]:
    """One forward (inference: eval + inference_mode) or one training step's forward + backward (no optimizer
    step: the weights stay as they are)."""
    net = prepared.model
    if mode == "inference":
        return prepared.forward_fn(x)
    gen = torch.Generator().manual_seed(0)
    target: list[torch.Tensor] = []

    def run() -> None:
        net.zero_grad(set_to_none=True)
        with prepared.autocast():
            logits = net(x)
        if not target:
            target.append(torch.randint(0, logits.shape[-1], (x.shape[0],), generator=gen).to(x.device))
        loss = torch.nn.functional.cross_entropy(logits.float(), target[0])
        loss.backward()

    return run


def _check(prepared: Prepared, mode: str, steps: int, warmup: int) -> None:
    refuse_mps(prepared.device)
    if mode not in MODES:
        raise LayerTimingError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if steps < 1 or warmup < 0:
        raise LayerTimingError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    if prepared.options.compile:
        raise LayerTimingError("time per layer needs eager execution: torch.compile fuses modules away; drop "
                               "--compile for this pass")


def _time_reference(step: Callable[[], None], device: torch.device, key: tuple[Any, ...], warmup: int,
                    timing: TimingConfig | None) -> dict[str, Any]:
    """The p50 of the step timed here, without profiler or hooks."""
    timer = Timer(device, timing or TimingConfig(warmup_rounds=max(warmup, 1), budget_s=1.0, min_rounds=5))
    res = timer.measure(step, key=key)
    reference = {"p50_ms": res.stats.p50, "iqr_ms": res.stats.iqr, "rounds": res.rounds,
                 "source": f"timed here without profiler or hooks ({res.rounds} rounds)"}
    contention = getattr(res, "contention", None)
    if contention is not None:  # a busy machine makes both the p50 and the profiled steps suspect
        reference.update(contention.values())
    return reference


def _profile_steps(net: nn.Module, step: Callable[[], None], device: torch.device, *, steps: int, warmup: int,
                   reference: dict[str, Any]) -> list[StepTimes]:
    """Run ``warmup`` then ``steps`` profiled steps, each in its own ``lvm.step#i`` range; time per module each."""
    cuda = device.type == "cuda"
    sync = synchronizer(device)  # names the case's device: a bare torch.cuda.synchronize() waits for the current one
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with module_ranges(net):
        for _ in range(warmup):
            step()
        sync()
        with Window(device, torch.get_num_threads()) as window, \
                profile(activities=activities, record_shapes=False) as prof:
            for i in range(steps):
                with record_function(f"{STEP_RANGE}{i}"):
                    step()
                    sync()
        # Other processes during the profiled steps inflate op times (on a shared CPU an OpenMP barrier waits
        # for a descheduled thread): recorded next to the times, never hidden.
        if window.result is not None:
            reference["profiled_steps"] = window.result.values()
    per_step = attribute(list(prof.events()), cuda=cuda)
    if len(per_step) != steps:
        raise RuntimeError(f"profiled {steps} steps but found {len(per_step)} step ranges in the trace")
    return per_step


def _count_work(net: nn.Module, x: torch.Tensor, step: Callable[[], None], mode: str
                ) -> tuple[OpTraffic, dict[str, int] | None]:
    """Forward FLOPs and bytes per module; in train mode also the forward + backward MACs per module."""
    if mode == "inference":
        return forward_traffic(net, step), None
    net.eval()  # FLOPs and bytes of the forward; train mode changes no MAC and no shape

    def fwd() -> None:
        with torch.no_grad():
            net(x)

    traffic = forward_traffic(net, fwd)
    counts = count_run(net, step)
    net.zero_grad(set_to_none=True)
    return traffic, {p: sum(ops.values()) for p, ops in counts.by_module.items()}


def _restore(net: nn.Module, was_training: bool, mode: str, saved_buffers: dict[str, torch.Tensor]) -> None:
    net.train(was_training)
    if mode == "train":
        net.zero_grad(set_to_none=True)
    with torch.no_grad():
        state = net.state_dict()
        for k, v in saved_buffers.items():
            state[k].copy_(v)  # BatchNorm statistics a training step moved


def measure_layers(
    prepared: Prepared,
    x: torch.Tensor,
    *,
    mode: str = "inference",
    steps: int = 5,
    warmup: int = 2,
    reference_ms: float | None = None,
    reference_source: str | None = None,
    timing: TimingConfig | None = None,
    peaks: dict[str, Any] | None = None,
    model: str | None = None,
    alias: str | None = None,
    family: str = "",
) -> dict[str, Any]:
    """Time per module of ``prepared.model`` on input ``x``; returns the ``lvmharness.layers`` document.

    ``reference_ms``: the p50 of the same step from timed rounds (a bench passes its latency p50); without it the
    step is timed here first, without profiler or hooks. ``peaks``: ``{"flops_per_s", "bytes_per_s"}`` measured
    on this device, for the roofline (leaves get no roofline without them).
    """
    _check(prepared, mode, steps, warmup)
    net, device = prepared.model, prepared.device
    was_training = net.training
    saved_buffers = {k: v.detach().clone() for k, v in net.state_dict().items() if not isinstance(v, nn.Parameter)}
    net.train(mode == "train")
    step = step_function(prepared, x, mode)
    try:
        if reference_ms is None:
            reference = _time_reference(step, device, ("layers", mode, tuple(x.shape)), warmup, timing)
        else:
            reference = {"p50_ms": float(reference_ms), "source": reference_source or "given"}
        per_step = _profile_steps(net, step, device, steps=steps, warmup=warmup, reference=reference)
        traffic, macs_fwd_bwd = _count_work(net, x, step, mode)
    finally:
        _restore(net, was_training, mode, saved_buffers)
    return build_document(
        net, per_step, traffic, macs_fwd_bwd=macs_fwd_bwd, reference=reference, peaks=peaks, mode=mode,
        meta={"model": model or type(net).__name__, "alias": alias or model or type(net).__name__,
              "family": family, "img_size": int(x.shape[-1]), "batch_size": int(x.shape[0]),
              "dtype": prepared.options.dtype, "device": str(device),
              "clock": "CUDA kernel time of each op" if device.type == "cuda" else "CPU self time of each op"},
    )


def measure_from_spec(
    model: str,
    *,
    img_size: int | None = None,
    batch_size: int = 1,
    device: str = "cpu",
    dtype: str = "fp32",
    mode: str = "inference",
    steps: int = 5,
    warmup: int = 2,
    roofline: bool = True,
) -> dict[str, Any]:
    """Build a registry/timm model and measure its time per layer (what ``lvm layers`` and the page run)."""
    if batch_size < 1:
        raise LayerTimingError(f"batch_size must be >= 1, got {batch_size}")
    spec = resolve(model)
    size = img_size or spec.default_img_size
    dev = resolve_device(device)
    refuse_mps(dev)  # before building the model there
    net = create_model(spec, img_size=size, device=dev)
    prepared = Prepared(net, dev, ExecOptions(dtype))
    x = prepared.make_input(batch_size, size)
    peaks = probe_peaks(dev, prepared.compute_dtype) if roofline else None
    return measure_layers(prepared, x, mode=mode, steps=steps, warmup=warmup, peaks=peaks, model=spec.timm_name,
                          alias=model, family=spec.family)
