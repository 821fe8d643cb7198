"""The MFU denominator: best of several probes or the theoretical peak, and no MFU above 1."""

from __future__ import annotations

import pytest
import torch

from lvmharness.measure.peak import efficiency, peak, precision_key, theoretical_cpu_fp32


def test_theoretical_cpu_peak_is_lanes_x_fma_x_units_x_cores_x_clock() -> None:
    # AVX-512: 16 fp32 lanes; an FMA is 2 FLOPs; at most 2 FMA units per core: 2 cores at 3 GHz -> 384 GFLOP/s.
    peak_s, formula = theoretical_cpu_fp32(cores=2, flags={"avx512f", "avx2", "fma"}, clock_hz=3.0e9) or (0, "")
    assert peak_s == pytest.approx(16 * 2 * 2 * 2 * 3.0e9) and "16 fp32 lanes" in formula
    avx2 = theoretical_cpu_fp32(cores=4, flags={"avx2", "fma"}, clock_hz=2.0e9)
    assert avx2 is not None and avx2[0] == pytest.approx(8 * 2 * 2 * 4 * 2.0e9)
    assert theoretical_cpu_fp32(cores=4, flags={"sse2"}, clock_hz=2.0e9) is None  # no FMA: not modelled
    assert theoretical_cpu_fp32(cores=4, flags={"avx512f"}, clock_hz=None) is None  # no readable maximum clock


def test_mfu_is_a_fraction_or_is_left_out() -> None:
    # 1 G MACs in 10 ms = 2 GFLOP / 0.01 s = 200 GFLOP/s achieved.
    values, notes = efficiency(10**9, 10.0, 400e9)
    assert values == {"achieved_flops_per_s": pytest.approx(200e9), "mfu": pytest.approx(0.5)} and notes == {}
    values, notes = efficiency(10**9, 10.0, 100e9)  # "faster than the peak": Winograd-style kernels
    assert values == {"achieved_flops_per_s": pytest.approx(200e9)}
    assert notes["achieved_over_peak"] == pytest.approx(2.0) and "Winograd" in notes["mfu_omitted"]


def test_the_peak_is_the_best_probe_matmul_and_convolution() -> None:
    p = peak(torch.device("cpu"), torch.float32, budget_s=0.05, sizes=((128, 256), 1))
    names = [probe["name"] for probe in p.probes]
    assert any(n.startswith("torch.mm") for n in names) and any(n.startswith("conv2d 3x3") for n in names)
    best = max(probe["flops_per_s"] for probe in p.probes)
    # Each probe's FLOP/s is its direct count over its median time: the 3x3 convolution does
    # B x 56 x 56 x 256 out-channels x 256 in-channels x 9 multiply-adds.
    conv = next(probe for probe in p.probes if probe["name"].startswith("conv2d 3x3"))
    assert conv["flops"] == 2 * 1 * 56 * 56 * 256 * 256 * 9
    assert conv["flops_per_s"] == pytest.approx(conv["flops"] / (conv["p50_ms"] / 1e3))
    if p.source == "measured":
        assert p.flops_per_s == best
    else:
        assert p.flops_per_s == p.theoretical_flops_per_s >= best
    assert p.precision["probe_precision_key"] == "cpu/float32"


def test_precision_key_names_dtype_and_device() -> None:
    assert precision_key(torch.device("cpu"), torch.bfloat16) == "cpu/bfloat16"


@pytest.mark.cuda
def test_cuda_fp32_peak_follows_the_tf32_state() -> None:
    dev = torch.device("cuda")
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        strict = peak(dev, torch.float32, budget_s=0.1)
        key_strict = precision_key(dev, torch.float32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        tf32 = peak(dev, torch.float32, budget_s=0.1)
        assert precision_key(dev, torch.float32) != key_strict
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    # TF32 tensor cores (Ampere and later) run fp32 GEMMs several times faster than true fp32.
    if torch.cuda.get_device_capability(dev)[0] >= 8:
        assert tf32.flops_per_s > 2 * strict.flops_per_s
    assert all(p["timed_with"].startswith("CUDA events") for p in tf32.probes)


def test_the_probe_cache_probes_each_roof_once_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from lvmharness.measure import peak as peak_module
    from lvmharness.measure.peak import Peak, ProbeCache

    calls: list[str] = []

    def fake_peak(device: torch.device, dtype: torch.dtype) -> Peak:
        calls.append(f"peak {dtype}")
        return Peak(1e12 if dtype == torch.float32 else 2e12, "measured", str(dtype))

    def fake_bandwidth(device: torch.device) -> dict[str, float]:
        calls.append("copy")
        return {"bytes_per_s": 5e10}

    monkeypatch.setattr(peak_module, "peak", fake_peak)
    monkeypatch.setattr(peak_module, "copy_bandwidth", fake_bandwidth)
    news: list[int] = []
    cache = ProbeCache(on_new=lambda: news.append(len(calls)))
    cpu = torch.device("cpu")
    for _ in range(3):
        roofs = cache.roofs(cpu, torch.float32)
    assert roofs["flops_per_s"] == 1e12 and roofs["bytes_per_s"] == 5e10 and roofs["compute_source"] == "measured"
    assert cache.roofs(cpu, torch.bfloat16)["flops_per_s"] == 2e12  # a dtype of its own; the bandwidth is reused
    assert calls == ["peak torch.float32", "copy", "peak torch.bfloat16"]
    assert news == [1, 2, 3]  # the owner hears of each new probe, once
    assert set(cache.peaks) == {precision_key(cpu, torch.float32), precision_key(cpu, torch.bfloat16)}
