"""Per-instance latency, MLPerf SingleStream style: batch 1, one request after another, over real samples.

Each request is timed host-to-host: from a preprocessed sample on the host to its logits back on the host, so the
transfer to and from the device is included. Preprocessing (resize, crop, normalize) is timed separately. This is
*not* batch latency ÷ batch size; the offline throughput (images ÷ wall time at a large batch) is a different
number with a different name.

Sufficiency: a p-th percentile is only trusted when enough samples bound it. With n samples, the order statistic
X_(r) is an upper confidence bound of the p-quantile at level c when P[Binomial(n, p) <= r - 1] >= c. The smallest
such r gives the early-stopping estimate (MLPerf's idea); when no r <= n qualifies there are too few samples
(for p90 at 99% confidence, n >= 44).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lvmharness.core.stats import percentile
from lvmharness.measure.contention import Contention, Window
from lvmharness.runtime.data import eval_transform, synthetic_samples
from lvmharness.runtime.execution import Prepared


def binom_cdf(k: int, n: int, p: float) -> float:
    """P[Binomial(n, p) <= k], exactly (log-space terms, no scipy)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
             for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def upper_bound_rank(n: int, q: float, confidence: float) -> int | None:
    """1-based rank r of the order statistic that bounds the q-quantile from above at ``confidence``, or None."""
    if not (0 < q < 1 and 0 < confidence < 1):
        raise ValueError("q and confidence must be in (0, 1)")
    for r in range(1, n + 1):
        if binom_cdf(r - 1, n, q) >= confidence:
            return r
    return None


def min_samples(q: float, confidence: float) -> int:
    """Fewest samples for which any order statistic bounds the q-quantile: 1 - q^n >= confidence."""
    return math.ceil(math.log(1 - confidence) / math.log(q))


@dataclass(frozen=True)
class Sufficiency:
    n: int
    quantile: float
    confidence: float
    rank: int | None
    upper_bound: float | None
    needed: int

    @property
    def sufficient(self) -> bool:
        return self.rank is not None


def sufficiency(samples: Sequence[float], quantile: float = 0.90, confidence: float = 0.99) -> Sufficiency:
    n = len(samples)
    rank = upper_bound_rank(n, quantile, confidence)
    bound = sorted(samples)[rank - 1] if rank is not None else None
    return Sufficiency(n, quantile, confidence, rank, bound, min_samples(quantile, confidence))


@dataclass
class InstanceResult:
    """Single-stream latency of one case: per-request samples, preprocessing apart, and the p90's sufficiency."""

    latency_ms: list[float]  # per request: transfer to device, forward, logits back on the host
    preprocess_ms: list[float]
    sufficiency: Sufficiency
    warmup_requests: int
    samples_source: str
    execution: dict[str, Any]
    compile_values: dict[str, float] = field(default_factory=dict)
    contention: Contention | None = None  # what the process got while the requests ran

    def values(self) -> dict[str, Any]:
        lat, pre = self.latency_ms, self.preprocess_ms
        e2e = [a + b for a, b in zip(pre, lat, strict=True)]
        busy = self.contention.values() if self.contention is not None else {}
        return {
            **busy,
            "instance_latency_ms_p50": percentile(lat, 50),
            "instance_latency_ms_p90": percentile(lat, 90),
            "instance_latency_ms_p99": percentile(lat, 99),
            "instance_latency_ms_mean": sum(lat) / len(lat),
            "instance_latency_ms_p90_upper_bound": self.sufficiency.upper_bound,
            "preprocess_ms_p50": percentile(pre, 50),
            "preprocess_ms_p90": percentile(pre, 90),
            "end_to_end_ms_p50": percentile(e2e, 50),
            "end_to_end_ms_p90": percentile(e2e, 90),
            "instance_requests": len(lat),
            "instance_p90_sufficient": self.sufficiency.sufficient,
            "samples": lat,
            "preprocess_samples": pre,
            **self.compile_values,
        }

    def provenance(self) -> dict[str, Any]:
        s = self.sufficiency
        return {
            "scenario": "single stream: batch 1, next request after the previous answer is on the host",
            "timed": "host-to-host: transfer to device, forward, logits back to host; preprocessing timed apart",
            "sufficiency": {"quantile": s.quantile, "confidence": s.confidence, "needed": s.needed, "rank": s.rank},
            "samples_source": self.samples_source,
            "warmup_requests": self.warmup_requests,
            "execution": self.execution,
            "contention": self.contention.provenance() if self.contention is not None else None,
        }


def single_stream(
    prepared: Prepared,
    img_size: int,
    *,
    samples: Sequence[Any] | None = None,
    min_requests: int | None = None,
    max_requests: int = 1024,
    budget_s: float = 5.0,
    warmup: int = 3,
    quantile: float = 0.90,
    confidence: float = 0.99,
    samples_source: str = "given samples",
) -> InstanceResult:
    """Issue batch-1 requests one after another until ``min_requests`` (by default the sufficiency minimum for
    ``quantile``) are done and ``budget_s`` has passed, or ``max_requests`` are done."""
    needed = min_samples(quantile, confidence)
    floor = min_requests if min_requests is not None else needed
    pool = list(samples) if samples is not None else synthetic_samples(64)
    if not pool:
        raise ValueError("no samples to run")
    tf = eval_transform(img_size)
    device = prepared.device
    dtype = prepared.param_dtype
    memory_format = torch.channels_last if prepared.options.channels_last else torch.contiguous_format

    def request(raw: Any) -> tuple[float, float]:
        t0 = time.perf_counter()
        x = tf(raw).unsqueeze(0)  # (1, 3, img, img) float32 on the host
        t1 = time.perf_counter()
        with prepared.context():
            out = prepared(x.to(device=device, dtype=dtype, memory_format=memory_format))
            out.float().cpu()  # waits for the device: the answer is on the host
        t2 = time.perf_counter()
        return (t1 - t0) * 1e3, (t2 - t1) * 1e3

    # Under torch.compile the first call compiles: do it (timed, recorded) before warm-up, never inside it.
    prepared.forward_fn(prepared.make_input(1, img_size))
    for i in range(warmup):
        request(pool[i % len(pool)])
    pre: list[float] = []
    lat: list[float] = []
    start = time.perf_counter()
    with Window(device, torch.get_num_threads()) as window:
        while len(lat) < max_requests and (len(lat) < floor or time.perf_counter() - start < budget_s):
            p_ms, l_ms = request(pool[len(lat) % len(pool)])
            pre.append(p_ms)
            lat.append(l_ms)
    return InstanceResult(
        latency_ms=lat, preprocess_ms=pre, sufficiency=sufficiency(lat, quantile, confidence), warmup_requests=warmup,
        samples_source="synthetic uint8 images 200-320 px" if samples is None else samples_source,
        execution=prepared.provenance(), compile_values=prepared.record_values(prepared.make_input(1, img_size)),
        contention=window.result,
    )
