"""The roofline: a measured memory-bandwidth peak (a copy probe) and where a layer sits under the two roofs.

Roofline model (Williams, Waterman and Patterson, CACM 2009): a kernel doing F FLOPs while moving B bytes has
arithmetic intensity I = F / B and cannot exceed ``min(peak FLOP/s, I × peak bytes/s)``. Below the ridge point
``I* = peak FLOP/s ÷ peak bytes/s`` it is memory-bound; above, compute-bound.

The compute roof is :mod:`lvmharness.measure.peak`'s (its best matmul/convolution probe on this device, or the
theoretical peak where that is higher); the memory roof is measured here by timing ``dst.copy_(src)`` over buffers
much larger than any cache (STREAM's "Copy" kernel, McCalpin 1995: bytes moved = read + written = 2 × buffer size).
"""

from __future__ import annotations

from typing import Any

import torch

from lvmharness.measure.budget import TimingConfig
from lvmharness.measure.latency import Timer

# Buffer size per device: well past the last-level cache (CPU L3s reach a few hundred MiB on large servers), small
# enough to probe in about a second.
PROBE_BYTES = {"cpu": 512 * 2**20, "mps": 1024 * 2**20, "cuda": 2048 * 2**20}


def copy_bandwidth(device: torch.device, *, nbytes: int | None = None, budget_s: float = 0.5) -> dict[str, Any]:
    """Bytes/s of ``dst.copy_(src)`` (read ``nbytes`` + write ``nbytes``) at the median of timed rounds."""
    size = nbytes or PROBE_BYTES.get(device.type, PROBE_BYTES["cpu"])
    if size < 4:
        raise ValueError(f"probe buffer must hold at least one float32, got {size} bytes")
    n = size // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    moved = 2 * n * 4

    def run() -> None:
        dst.copy_(src)

    timer = Timer(device, TimingConfig(warmup_rounds=2, warmup_s=0.05, budget_s=budget_s, min_rounds=5,
                                       max_rounds=200))
    res = timer.measure(run, key=("bandwidth", n))
    seconds = res.stats.p50 / 1e3
    return {
        "bytes_per_s": moved / seconds,
        "probe": f"torch copy_ of {n * 4} bytes (float32), counted as {moved} bytes moved (read + write)",
        "nbytes": n * 4,
        "rounds": res.rounds,
        "p50_ms": res.stats.p50,
        "torch_num_threads": torch.get_num_threads(),
    }


def ridge_point(peak_flops_per_s: float, peak_bytes_per_s: float) -> float:
    """Arithmetic intensity (FLOP/byte) at which the two roofs meet."""
    return peak_flops_per_s / peak_bytes_per_s


def place(flops: int, nbytes: int, seconds: float, peaks: dict[str, Any] | None) -> dict[str, Any]:
    """Where one layer sits: intensity, achieved FLOP/s and bytes/s, and — given both measured peaks — its roof,
    whether it is memory- or compute-bound, and the fraction of its roof it reaches."""
    out: dict[str, Any] = {
        "flops": flops,
        "bytes": nbytes,
        "seconds": seconds,
        "intensity_flop_per_byte": flops / nbytes if nbytes else None,
        "achieved_flops_per_s": flops / seconds if seconds > 0 and flops else None,
        "achieved_bytes_per_s": nbytes / seconds if seconds > 0 and nbytes else None,
        "bound": None,
        "roof_flops_per_s": None,
        "fraction_of_roof": None,
    }
    if not peaks or not peaks.get("flops_per_s") or not peaks.get("bytes_per_s"):
        return out
    pf, pb = float(peaks["flops_per_s"]), float(peaks["bytes_per_s"])
    intensity = out["intensity_flop_per_byte"]
    if intensity is None:
        return out
    out["bound"] = "memory" if intensity < ridge_point(pf, pb) else "compute"
    out["roof_flops_per_s"] = min(pf, intensity * pb)
    if flops:
        # A layer that moves bytes but does no multiply-adds (norms, activations) is judged by bandwidth.
        achieved = out["achieved_flops_per_s"] or 0.0
        out["fraction_of_roof"] = achieved / out["roof_flops_per_s"] if out["roof_flops_per_s"] else None
    elif out["achieved_bytes_per_s"]:
        out["fraction_of_roof"] = out["achieved_bytes_per_s"] / pb
    return out
