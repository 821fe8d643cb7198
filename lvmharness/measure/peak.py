"""Measured peak matmul throughput per device and dtype, the denominator of MFU.

Never a spec-sheet number: a square matmul probe timed with the same synchronized timer as the benches. The
result is recorded in the run's env.json so every MFU can be traced to the probe that produced its peak.
"""

from __future__ import annotations

from typing import Any

import torch

from lvmharness.measure.latency import Timer, TimingConfig

# Probe sizes: large enough to reach the GEMM plateau, small enough to take about a second.
PROBE_N = {"cpu": 2048, "mps": 4096, "cuda": 8192}


def matmul_peak(device: torch.device, dtype: torch.dtype, *, n: int | None = None,
                budget_s: float = 0.5) -> dict[str, Any]:
    """FLOP/s of an n×n @ n×n matmul (2·n³ FLOPs) at the median of timed rounds."""
    size = n or PROBE_N.get(device.type, 2048)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)

    def run() -> None:
        torch.mm(a, b)

    timer = Timer(device, TimingConfig(warmup_rounds=2, warmup_s=0.1, budget_s=budget_s, min_rounds=3,
                                       max_rounds=200))
    res = timer.measure(run, key=("peak", size))
    seconds = res.stats.p50 / 1e3
    return {
        "flops_per_s": 2 * size**3 / seconds,
        "probe": f"torch.mm {size}x{size} @ {size}x{size}",
        "n": size,
        "rounds": res.rounds,
        "p50_ms": res.stats.p50,
        "torch_num_threads": torch.get_num_threads(),
    }


def efficiency(macs: int, latency_ms: float, peak_flops_per_s: float | None) -> dict[str, float]:
    """Achieved FLOP/s of one forward (2 × MACs over its median latency) and MFU = achieved ÷ measured peak."""
    if latency_ms <= 0:
        return {}
    achieved = 2 * macs / (latency_ms / 1e3)
    out = {"achieved_flops_per_s": achieved}
    if peak_flops_per_s:
        out["mfu"] = achieved / peak_flops_per_s
    return out
