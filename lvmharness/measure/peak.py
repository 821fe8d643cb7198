"""The denominator of MFU: the device's peak FLOP/s for a dtype, and what it rests on.

MFU (model FLOPs utilisation, Chowdhery et al. 2022, "PaLM", appendix B) = achieved FLOP/s ÷ peak FLOP/s, where
achieved counts the model's multiply-adds directly (2 FLOPs each). Two ways to a peak, both recorded:

* **theoretical** — SIMD lanes × 2 FLOPs per FMA × FMA units per core × cores × maximum clock, where all of it can
  be read (CPU: ``/proc/cpuinfo`` flags and the cpufreq maximum; FMA units per core cannot be read, so the upper
  bound 2 — the most any x86 core has — is used). Only fp32 on x86 CPUs;
* **measured** — the best of several probes timed with the benches' synchronized timer (device events on CUDA):
  square matmuls, and 3×3 and 1×1 convolutions at ResNet stage sizes, since on CPUs oneDNN's convolutions reach
  more FLOP/s than its GEMM (a single matmul probe is not the machine's peak).

The denominator is the larger of the two that exist. A model kernel can still beat it: a Winograd or FFT
convolution does fewer multiplies than the direct count (Lavin & Gray 2016), so its "achieved" FLOP/s is not real
arithmetic. That is recorded as such (``mfu`` left out, the ratio named ``achieved_over_peak``), never as MFU > 1.

On CUDA the probes run at the precision the case runs at: fp32 matmuls follow ``torch.backends.cuda.matmul
.allow_tf32`` / the float32 matmul precision, fp32 convolutions ``torch.backends.cudnn.allow_tf32`` (True by
default: TF32 tensor cores) — the state is recorded with the peak and is part of its cache key.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from lvmharness.core import procfs
from lvmharness.measure.budget import TimingConfig
from lvmharness.measure.latency import Timer
from lvmharness.measure.roofline import copy_bandwidth
from lvmharness.runtime.execution import numerics_settings

# (matmul n, conv batch) per device type: large enough to reach the plateau, small enough for about a second.
PROBE_SIZES = {"cpu": ((1024, 2048), 8), "mps": ((2048, 4096), 16), "cuda": ((4096, 8192), 64)}


@dataclass
class Probe:
    name: str
    flops: int  # direct count, 2 per multiply-add
    p50_ms: float
    rounds: int
    timed_with: str
    contended: bool | None = None  # the probe's own busy-machine flag: a contended probe understates the peak

    @property
    def flops_per_s(self) -> float:
        return self.flops / (self.p50_ms / 1e3)


@dataclass
class Peak:
    """The peak FLOP/s used as MFU's denominator and how it was obtained."""

    flops_per_s: float
    source: str  # "measured" (best probe) or "theoretical"
    dtype: str
    probes: list[dict[str, Any]] = field(default_factory=list)
    theoretical_flops_per_s: float | None = None
    theoretical_formula: str | None = None
    precision: dict[str, Any] = field(default_factory=dict)

    def provenance(self) -> dict[str, Any]:
        return asdict(self)


def precision_key(device: torch.device, dtype: torch.dtype) -> str:
    """What a cached peak depends on: device, dtype and, for fp32 on CUDA, the TF32 / matmul-precision state."""
    key = f"{device}/{str(dtype).removeprefix('torch.')}"
    if device.type == "cuda" and dtype == torch.float32:
        key += (f"/matmul_tf32={torch.backends.cuda.matmul.allow_tf32}/cudnn_tf32={torch.backends.cudnn.allow_tf32}"
                f"/precision={torch.get_float32_matmul_precision()}")
    return key


def _time(device: torch.device, name: str, flops: int, fn: Callable[[], Any], budget_s: float) -> Probe:
    timer = Timer(device, TimingConfig(warmup_rounds=2, warmup_s=0.05, budget_s=budget_s, min_rounds=3,
                                       max_rounds=100))
    res = timer.measure(fn, key=name)
    busy = res.contention.contended if res.contention is not None else None
    if res.device_stats is not None:  # CUDA events: kernel time on the device, without launch gaps
        return Probe(name, flops, res.device_stats.p50, res.rounds, "CUDA events on the device's stream", busy)
    return Probe(name, flops, res.stats.p50, res.rounds, "perf_counter, synchronized", busy)


def probes(device: torch.device, dtype: torch.dtype, *, budget_s: float = 0.3,
           sizes: tuple[tuple[int, ...], int] | None = None) -> list[Probe]:
    """Matmul and convolution probes in ``dtype`` on ``device``, each timed at the median of its rounds."""
    mm_sizes, conv_batch = sizes or PROBE_SIZES.get(device.type, PROBE_SIZES["cpu"])
    gen = torch.Generator().manual_seed(0)
    out: list[Probe] = []
    with torch.inference_mode():
        for n in mm_sizes:
            a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
            b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
            out.append(_time(device, f"torch.mm {n}x{n} @ {n}x{n}", 2 * n**3, functools.partial(torch.mm, a, b),
                             budget_s))
            del a, b
        # ResNet-50 stage-1 shape: (B, 256, 56, 56) -> 256 channels, 3x3 (padding 1) and 1x1.
        x = torch.randn(conv_batch, 256, 56, 56, generator=gen).to(device=device, dtype=dtype)
        for k in (3, 1):
            w = torch.randn(256, 256, k, k, generator=gen).to(device=device, dtype=dtype)
            macs = conv_batch * 56 * 56 * 256 * 256 * k * k
            conv = functools.partial(torch.nn.functional.conv2d, x, w, padding=k // 2)
            out.append(_time(device, f"conv2d {k}x{k} ({conv_batch}, 256, 56, 56) -> 256", 2 * macs, conv, budget_s))
    return out


def theoretical_cpu_fp32(cores: int | None = None, flags: set[str] | None = None,
                         clock_hz: float | None = None) -> tuple[float, str] | None:
    """x86 fp32 upper bound: lanes (16 with AVX-512F, 8 with AVX2+FMA) × 2 FLOPs per FMA × 2 FMA units × cores ×
    max clock; None where the lanes or the clock cannot be read (or without FMA)."""
    flags = procfs.cpu_flags() if flags is None else flags
    # Without cpufreq (most VMs) there is no trustworthy maximum: the 'cpu MHz' of /proc/cpuinfo is the current or
    # nominal clock, below turbo, and would understate the peak.
    clock = procfs.cpu_max_freq_hz() if clock_hz is None else clock_hz
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
    lanes = 16 if "avx512f" in flags else 8 if {"avx2", "fma"} <= flags else None
    if lanes is None or clock is None:
        return None
    peak = lanes * 2 * 2 * cores * clock
    return peak, f"{lanes} fp32 lanes x 2 FLOPs/FMA x 2 FMA units (upper bound) x {cores} cores x {clock / 1e9:.3g} GHz"


def peak(device: torch.device, dtype: torch.dtype, *, budget_s: float = 0.3,
         sizes: tuple[tuple[int, ...], int] | None = None) -> Peak:
    """The MFU denominator for ``dtype`` on ``device``: the larger of the best probe and the theoretical peak."""
    found = probes(device, dtype, budget_s=budget_s, sizes=sizes)
    best = max(found, key=lambda p: p.flops_per_s)
    result = Peak(best.flops_per_s, "measured", str(dtype).removeprefix("torch."),
                  probes=[{**asdict(p), "flops_per_s": p.flops_per_s} for p in found],
                  precision=numerics_settings())
    result.precision["probe_precision_key"] = precision_key(device, dtype)
    if device.type == "cpu" and dtype == torch.float32 and re.match(r"x86|amd64|i\d86", os.uname().machine.lower()):
        theo = theoretical_cpu_fp32()
        if theo is not None:
            result.theoretical_flops_per_s, result.theoretical_formula = theo
            if theo[0] >= result.flops_per_s:
                result.flops_per_s, result.source = theo[0], "theoretical"
    return result


@dataclass
class ProbeCache:
    """Both roofs of the devices in use, each probed once per owner (a bench session, a page-serving process): the
    compute peak per :func:`precision_key` and the copy bandwidth per device. ``on_new`` runs after each new probe
    (a bench session records the probes in env.json then)."""

    peaks: dict[str, dict[str, Any]] = field(default_factory=dict)  # precision key -> Peak.provenance()
    bandwidths: dict[str, dict[str, Any]] = field(default_factory=dict)  # str(device) -> copy_bandwidth()
    on_new: Callable[[], None] | None = None

    def compute(self, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        """Peak FLOP/s for (device, compute dtype, TF32 state): best of the probes or the theoretical peak."""
        key = precision_key(device, dtype)
        if key not in self.peaks:
            self.peaks[key] = peak(device, dtype).provenance()
            if self.on_new is not None:
                self.on_new()
        return self.peaks[key]

    def memory(self, device: torch.device) -> dict[str, Any]:
        """Measured copy bandwidth of a device (the roofline's memory roof)."""
        key = str(device)
        if key not in self.bandwidths:
            self.bandwidths[key] = copy_bandwidth(device)
            if self.on_new is not None:
                self.on_new()
        return self.bandwidths[key]

    def roofs(self, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        """Both roofs of ``device`` for ``dtype``, as the roofline placement reads them."""
        compute = self.compute(device, dtype)  # best of matmul and convolution probes (or the theoretical peak)
        memory = self.memory(device)
        return {"flops_per_s": compute["flops_per_s"], "bytes_per_s": memory["bytes_per_s"],
                "compute_source": compute.get("source"), "compute_probe": compute, "memory_probe": memory}


def efficiency(macs: int, latency_ms: float, peak_flops_per_s: float | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values, provenance) of one forward's efficiency: achieved FLOP/s = 2 × MACs over the median latency, and
    MFU = achieved ÷ peak when that is at most 1. Above 1 the count is not the arithmetic that ran (a Winograd/FFT
    kernel) or the peak probe did not saturate: ``mfu`` is left out and the ratio is recorded under its own name."""
    if latency_ms <= 0:
        return {}, {}
    achieved = 2 * macs / (latency_ms / 1e3)
    values: dict[str, Any] = {"achieved_flops_per_s": achieved}
    prov: dict[str, Any] = {}
    if peak_flops_per_s:
        ratio = achieved / peak_flops_per_s
        if ratio <= 1.0:
            values["mfu"] = ratio
        else:
            prov["achieved_over_peak"] = ratio
            prov["mfu_omitted"] = ("achieved FLOP/s (2 x direct MAC count / latency) is above the peak: the kernels "
                                   "did fewer multiplies than the direct count (Winograd/FFT convolution) or the peak "
                                   "probes did not reach the machine's peak; an MFU above 1 would be meaningless")
    return values, prov


# --- the denominator of one model: the peak of the kernels that carry its MACs ------------------------------------

# Which probes stand for which of a model's ops. Convolutions run as cuDNN/oneDNN convolution kernels, everything
# else that the counter counts (linear/addmm, mm, bmm, attention) as GEMMs. On CUDA the two run at different
# precisions in fp32 (torch.backends.cuda.matmul.allow_tf32 is False by default, torch.backends.cudnn.allow_tf32
# True), so one max over both probe kinds would hold an fp32 ViT against the TF32 tensor-core rate.
KERNEL_KINDS = ("matmul", "conv")


def probe_kind(probe_name: str) -> str:
    return "conv" if probe_name.startswith("conv") else "matmul"


def op_kind(op: str) -> str:
    """Kernel kind of a counted op (``aten.convolution`` -> conv; mm, addmm, bmm, attention -> matmul)."""
    return "conv" if "conv" in op else "matmul"


def mac_mix_peak(peak_provenance: dict[str, Any], macs_by_op: dict[str, int]) -> tuple[float, dict[str, Any]]:
    """MFU's denominator for one model: the peak of each kernel kind (its best probe; on the CPU at least the
    theoretical peak, which bounds every kind) weighted by the model's MAC mix. The fastest a model can go is every
    MAC at its kind's peak, so the time is the sum over kinds of MACs_k / peak_k and the denominator is the weighted
    harmonic mean: total MACs / Σ (MACs_k / peak_k). Returns (FLOP/s, what it rests on).

    Without probes of a kind the model uses, or without a MAC breakdown, falls back to the device peak as given."""
    total = sum(macs_by_op.values())
    per_kind: dict[str, float] = {}
    for p in peak_provenance.get("probes") or []:
        kind = probe_kind(str(p["name"]))
        per_kind[kind] = max(per_kind.get(kind, 0.0), float(p["flops_per_s"]))
    theo = peak_provenance.get("theoretical_flops_per_s")
    if theo:
        per_kind = {k: max(v, float(theo)) for k, v in per_kind.items()}
    macs_by_kind = {k: 0 for k in KERNEL_KINDS}
    for op, macs in macs_by_op.items():
        macs_by_kind[op_kind(op)] += int(macs)
    used = {k: m for k, m in macs_by_kind.items() if m > 0}
    if total <= 0 or not used or any(k not in per_kind or per_kind[k] <= 0 for k in used):
        return float(peak_provenance["flops_per_s"]), {"method": "device peak (no MAC breakdown or probe kind)"}
    mixed = total / sum(m / per_kind[k] for k, m in used.items())
    return mixed, {
        "method": "peak of each kernel kind weighted by the model's MACs (harmonic mean)",
        "peak_flops_per_s_by_kind": {k: per_kind[k] for k in used},
        "macs_share_by_kind": {k: m / total for k, m in used.items()},
        "device_peak_flops_per_s": float(peak_provenance["flops_per_s"]),
    }


_PROBES = ProbeCache()  # a page server measuring many models probes once, like a bench run


def probe_peaks(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Both roofs of this device (the compute peak, the MFU denominator, and the copy bandwidth), probed once per
    process."""
    return dict(_PROBES.roofs(device, dtype))
