"""Per-instance latency: sufficiency on known samples, the single-stream loop, and compile accounting."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lvmharness.measure.budget import TimingConfig
from lvmharness.measure.instance import (
    binom_cdf,
    min_samples,
    single_stream,
    sufficiency,
    synthetic_samples,
    upper_bound_rank,
)
from lvmharness.measure.latency import ForwardCase, Timer, forward_latency
from lvmharness.models.build import create_model
from lvmharness.runtime.execution import ExecOptions, Prepared


def test_binomial_cdf_on_hand_computed_values() -> None:
    assert binom_cdf(0, 2, 0.5) == pytest.approx(0.25)
    assert binom_cdf(1, 2, 0.5) == pytest.approx(0.75)
    assert binom_cdf(2, 3, 0.9) == pytest.approx(1 - 0.9**3)
    assert binom_cdf(-1, 5, 0.3) == 0.0 and binom_cdf(5, 5, 0.3) == 1.0


def test_p90_needs_44_samples_at_99_percent() -> None:
    assert min_samples(0.90, 0.99) == 44  # 0.9^44 = 0.0097 <= 0.01 < 0.9^43
    assert min_samples(0.99, 0.99) == 459
    assert upper_bound_rank(43, 0.90, 0.99) is None
    assert upper_bound_rank(44, 0.90, 0.99) == 44  # only the maximum bounds the p90 with 44 samples
    assert upper_bound_rank(2, 0.5, 0.7) == 2  # P[Bin(2, .5) <= 0] = .25, P[<= 1] = .75


def test_the_bound_rank_is_the_smallest_that_reaches_the_confidence() -> None:
    n, q, c = 200, 0.9, 0.99
    r = upper_bound_rank(n, q, c)
    assert r is not None and 180 < r < n
    assert binom_cdf(r - 1, n, q) >= c > binom_cdf(r - 2, n, q)


def test_sufficiency_on_known_samples() -> None:
    samples = [float(i) for i in range(1, 45)]  # 1..44 ms
    s = sufficiency(samples)
    assert s.sufficient and s.rank == 44 and s.upper_bound == 44.0
    short = sufficiency(samples[:20])
    assert not short.sufficient and short.upper_bound is None and short.needed == 44


def test_single_stream_on_a_tiny_model() -> None:
    model = create_model("smoke_vit").eval()
    prepared = Prepared(model, torch.device("cpu"), ExecOptions())
    result = single_stream(prepared, 32, samples=synthetic_samples(8), budget_s=0.0)
    values, prov = result.values(), result.provenance()
    assert values["instance_requests"] == 44 == len(values["samples"])
    assert values["instance_p90_sufficient"] is True
    assert values["instance_latency_ms_p50"] <= values["instance_latency_ms_p90"] <= values["instance_latency_ms_p99"]
    assert values["end_to_end_ms_p50"] > values["instance_latency_ms_p50"]
    assert values["preprocess_ms_p50"] > 0
    assert "host-to-host" in prov["timed"]
    assert isinstance(values["contended"], bool) and prov["contention"]["threads"] == torch.get_num_threads()


def test_compiled_model_records_compile_time_apart_and_recompiles_per_shape() -> None:
    model = create_model("smoke_vit", img_size=32).eval()
    prepared = Prepared(model, torch.device("cpu"), ExecOptions(compile=True, compile_backend="eager"))
    timer = Timer(torch.device("cpu"), TimingConfig(warmup_rounds=2, warmup_s=0, budget_s=0.02, min_rounds=3))
    first_result = forward_latency(prepared, ForwardCase(1, 32), timer)
    first, prov = first_result.values(), first_result.provenance()
    assert first["compile_first_call_ms"] > 0
    assert first["compile_graphs_this_shape"] >= 1
    # The compile is not in the warm-up or the samples: steady state is far below the first call.
    assert first["latency_ms_p50"] < first["compile_first_call_ms"]
    second = forward_latency(prepared, ForwardCase(2, 32), timer).values()
    assert second["compile_graphs_this_shape"] >= 1  # a new shape is a recompile
    assert second["compile_graphs_total"] == first["compile_graphs_this_shape"] + second["compile_graphs_this_shape"]
    again = forward_latency(prepared, ForwardCase(1, 32), timer).values()
    assert again["compile_graphs_total"] == second["compile_graphs_total"]  # a seen shape compiles nothing
    assert prov["execution"]["compile_backend"] == "eager"


def test_channels_last_and_amp_are_applied_and_recorded() -> None:
    model = create_model("smoke_resnet").eval()
    prepared = Prepared(model, torch.device("cpu"), ExecOptions(dtype="amp_bf16", channels_last=True))
    x = prepared.make_input(2, 64)
    assert x.is_contiguous(memory_format=torch.channels_last) and x.dtype == torch.float32
    with prepared.context():
        out = prepared(x)
    assert out.dtype == torch.bfloat16  # autocast ran the layers in bf16
    assert prepared.provenance()["autocast_dtype"] == "torch.bfloat16"


def test_single_stream_over_real_cifar_images(tmp_path: Path) -> None:
    from lvmharness.runtime.data import raw_samples
    from tests.helpers.datasets import write_cifar100

    write_cifar100(tmp_path, train=8, test=12)
    images = raw_samples("cifar100", data_dir=tmp_path, count=64)
    assert len(images) == 12 and images[0].size == (32, 32)  # decoded PIL images, not yet transformed
    prepared = Prepared(create_model("smoke_vit").eval(), torch.device("cpu"), ExecOptions())
    result = single_stream(prepared, 32, samples=images, budget_s=0.0, samples_source="cifar100")
    values, prov = result.values(), result.provenance()
    assert values["instance_requests"] == 44 and prov["samples_source"] == "cifar100"
