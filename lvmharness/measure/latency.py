"""The timing core.

Rules it enforces (each one a bug somebody shipped):
  * every clock read is preceded by a device synchronize, so queued GPU work is inside the interval;
  * on CUDA, events bracket the work too, giving device time beside host time;
  * warm-up happens once per input shape (cudnn autotuning, allocator growth and caches are per shape),
    for at least ``warmup_rounds`` and ``warmup_s``;
  * raw samples are kept; statistics are median / IQR / p90 / p99 / mean / stdev with a high-variance flag;
  * the number of measured rounds comes from a time budget clamped to [min_rounds, max_rounds].
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from lvmharness.devices import synchronizer
from lvmharness.execution import ExecOptions, Prepared
from lvmharness.stats import percentile

# IQR / median above this marks a measurement as noisy (the architecture note's 10% rule).
HIGH_VARIANCE_REL_IQR = 0.10

RoundFn = Callable[[], None]
# Something that calls a round function ``n`` times; pytest-benchmark's pedantic mode is one.
Runner = Callable[[RoundFn, int], None]


@dataclass(frozen=True)
class TimingConfig:
    warmup_rounds: int = 3
    warmup_s: float = 0.3
    max_warmup_rounds: int = 50
    budget_s: float = 2.0
    min_rounds: int = 5
    max_rounds: int = 200

    def __post_init__(self) -> None:
        if self.min_rounds < 1 or self.max_rounds < self.min_rounds:
            raise ValueError(f"need 1 <= min_rounds <= max_rounds, got {self.min_rounds}, {self.max_rounds}")
        if self.warmup_rounds < 0 or self.budget_s < 0 or self.warmup_s < 0:
            raise ValueError("warmup_rounds, warmup_s and budget_s must be >= 0")


@dataclass(frozen=True)
class Stats:
    """Summary of timing samples, all in milliseconds."""

    n: int
    mean: float
    stdev: float
    min: float
    max: float
    p50: float
    p90: float
    p99: float
    q1: float
    q3: float
    iqr: float
    iqr_rel: float
    high_variance: bool

    @classmethod
    def of(cls, samples_ms: list[float], threshold: float = HIGH_VARIANCE_REL_IQR) -> Stats:
        if not samples_ms:
            raise ValueError("no samples to summarize")
        p50 = percentile(samples_ms, 50)
        q1, q3 = percentile(samples_ms, 25), percentile(samples_ms, 75)
        iqr = q3 - q1
        rel = iqr / p50 if p50 > 0 else 0.0
        return cls(
            n=len(samples_ms),
            mean=statistics.fmean(samples_ms),
            stdev=statistics.stdev(samples_ms) if len(samples_ms) > 1 else 0.0,
            min=min(samples_ms),
            max=max(samples_ms),
            p50=p50,
            p90=percentile(samples_ms, 90),
            p99=percentile(samples_ms, 99),
            q1=q1,
            q3=q3,
            iqr=iqr,
            iqr_rel=rel,
            high_variance=rel > threshold,
        )

    def values(self, prefix: str = "latency_ms") -> dict[str, float]:
        return {
            f"{prefix}_p50": self.p50,
            f"{prefix}_p90": self.p90,
            f"{prefix}_p99": self.p99,
            f"{prefix}_iqr": self.iqr,
            f"{prefix}_mean": self.mean,
            f"{prefix}_stdev": self.stdev,
            f"{prefix}_min": self.min,
            f"{prefix}_max": self.max,
        }


@dataclass
class TimingResult:
    samples_ms: list[float]  # host time per round, synchronized at both reads
    device_samples_ms: list[float] | None  # CUDA event time per round; None off CUDA
    warmup_rounds: int  # warm-up rounds run for this call (0 when the shape was already warm)
    warmup_s: float
    stats: Stats
    device_stats: Stats | None = None

    @property
    def rounds(self) -> int:
        return len(self.samples_ms)

    @property
    def total_s(self) -> float:
        return sum(self.samples_ms) / 1e3


@dataclass
class _Warm:
    round_s: float  # steady-state estimate of one round, from the second half of warm-up
    rounds: int
    seconds: float


def _loop_runner(fn: RoundFn, n: int) -> None:
    for _ in range(n):
        fn()


class Timer:
    """Times a no-argument callable in synchronized rounds; one round = one call of ``fn``.

    ``clock`` and ``sync`` are injectable so tests can verify that a sync precedes every clock read.
    """

    def __init__(
        self,
        device: torch.device,
        config: TimingConfig | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
        sync: Callable[[], None] | None = None,
    ) -> None:
        self.device = device
        self.config = config or TimingConfig()
        self._clock = clock
        self._sync = sync if sync is not None else synchronizer(device)
        self._events = device.type == "cuda"
        self._warm: dict[Hashable, _Warm] = {}

    def now(self) -> float:
        """Seconds, after waiting for all queued device work."""
        self._sync()
        return self._clock()

    def is_warm(self, key: Hashable) -> bool:
        return key in self._warm

    def warm_up(self, fn: RoundFn, key: Hashable) -> _Warm:
        """Run ``fn`` until warm for this input shape; later calls with the same key do nothing."""
        if key in self._warm:
            return _Warm(self._warm[key].round_s, 0, 0.0)
        cfg = self.config
        times: list[float] = []
        start = self.now()
        while len(times) < cfg.max_warmup_rounds:
            t0 = self.now()
            fn()
            t1 = self.now()
            times.append(t1 - t0)
            if len(times) >= cfg.warmup_rounds and t1 - start >= cfg.warmup_s:
                break
        # First calls carry one-off costs (allocation, autotuning); the later half estimates the steady state.
        tail = times[len(times) // 2 :] or times or [0.0]
        state = _Warm(statistics.median(tail), len(times), sum(times))
        self._warm[key] = state
        return state

    def plan_rounds(self, key: Hashable) -> int:
        cfg = self.config
        est = self._warm[key].round_s if key in self._warm else 0.0
        wanted = cfg.max_rounds if est <= 0 else math.ceil(cfg.budget_s / est)
        return max(cfg.min_rounds, min(cfg.max_rounds, wanted))

    def measure(
        self, fn: RoundFn, key: Hashable, *, rounds: int | None = None, runner: Runner | None = None
    ) -> TimingResult:
        """Warm up (if this shape is new), then time ``rounds`` rounds (planned from the budget if None).

        ``runner`` drives the rounds; the default is a plain loop. pytest-benchmark's ``pedantic`` can drive
        them instead, so its statistics and ours come from the very same rounds.
        """
        warm = self.warm_up(fn, key)
        n = rounds if rounds is not None else self.plan_rounds(key)
        host: list[float] = []
        pairs: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

        def one_round() -> None:
            if self._events:
                ev0 = torch.cuda.Event(enable_timing=True)
                ev1 = torch.cuda.Event(enable_timing=True)
                t0 = self.now()
                ev0.record()
                fn()
                ev1.record()
                t1 = self.now()
                pairs.append((ev0, ev1))
            else:
                t0 = self.now()
                fn()
                t1 = self.now()
            host.append((t1 - t0) * 1e3)

        (runner or _loop_runner)(one_round, n)
        if not host:
            raise RuntimeError("the runner ran no rounds; nothing was measured")
        device_ms = [a.elapsed_time(b) for a, b in pairs] if pairs else None
        return TimingResult(
            samples_ms=host,
            device_samples_ms=device_ms,
            warmup_rounds=warm.rounds,
            warmup_s=warm.seconds,
            stats=Stats.of(host),
            device_stats=Stats.of(device_ms) if device_ms else None,
        )


def settings(device: torch.device) -> dict[str, Any]:
    """Every global setting that changes a timing, for the record's provenance."""
    out: dict[str, Any] = {
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "mkldnn_enabled": bool(torch.backends.mkldnn.enabled),
    }
    if device.type == "cuda":
        out["cuda_events"] = True
    return out


@dataclass(frozen=True)
class ForwardCase:
    batch_size: int
    img_size: int
    seed: int = 0


def forward_latency(
    model: torch.nn.Module | Prepared,
    case: ForwardCase,
    timer: Timer,
    *,
    runner: Runner | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Time the forward of a model (on the timer's device, eval mode) on one fixed random batch.

    ``model`` is a plain module (fp32, as it is) or a :class:`Prepared` one carrying dtype/AMP, channels_last and
    torch.compile. Returns (values, provenance) for a result record. ``latency_ms_*`` is the time of one
    synchronized forward of the whole batch; ``throughput_img_s`` = images / wall time over the measured rounds.
    The input is already on the device: the transfer is not timed here (per-instance latency times it).
    """
    prepared = model if isinstance(model, Prepared) else Prepared(model, timer.device, ExecOptions())
    x = prepared.make_input(case.batch_size, case.img_size, case.seed)
    fn = prepared.forward_fn(x)  # under compile, the first call (the compile) happens and is timed here
    res = timer.measure(fn, key=(tuple(x.shape), prepared.options), runner=runner)
    values: dict[str, Any] = res.stats.values("latency_ms")
    values["throughput_img_s"] = case.batch_size * res.rounds / res.total_s if res.total_s > 0 else math.inf
    values["samples"] = res.samples_ms
    values.update(prepared.record_values(x))
    if res.device_stats is not None:
        values.update(res.device_stats.values("device_latency_ms"))
        values["device_samples"] = res.device_samples_ms
    provenance: dict[str, Any] = {
        "timer": "lvmharness.measure.latency.Timer",
        "clock": "time.perf_counter, synchronized before each read",
        "mode": "eval + torch.inference_mode",
        "rounds": res.rounds,
        "warmup_rounds": res.warmup_rounds,
        "warmup_s": res.warmup_s,
        "iqr_rel": res.stats.iqr_rel,
        "high_variance": res.stats.high_variance,
        "config": asdict(timer.config),
        "settings": settings(timer.device),
        "execution": prepared.provenance(),
    }
    return values, provenance


def fidelity(fn: RoundFn, timer: Timer, key: Hashable, *, runner: Runner | None = None) -> dict[str, float]:
    """Time ``fn`` with our core, with ``torch.utils.benchmark.Timer`` and with a bare perf_counter loop.

    Ratios near 1.0 say our synchronization and bookkeeping add no measurable overhead; ratios far from 1.0 say
    one of the three is measuring something else.
    """
    from torch.utils.benchmark import Timer as TorchTimer

    ours = timer.measure(fn, key, runner=runner)
    budget = max(timer.config.budget_s, 0.2)
    theirs = TorchTimer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=budget)
    bare: list[float] = []
    sync = timer._sync
    for _ in range(ours.rounds):
        t0 = time.perf_counter()
        fn()
        sync()
        bare.append((time.perf_counter() - t0) * 1e3)
    ours_ms = ours.stats.p50
    torch_ms = theirs.median * 1e3
    bare_ms = percentile(bare, 50)
    return {
        "latency_ms_p50": ours_ms,
        "torch_timer_ms_median": torch_ms,
        "bare_loop_ms_p50": bare_ms,
        "ratio_ours_vs_torch_timer": ours_ms / torch_ms,
        "ratio_ours_vs_bare_loop": ours_ms / bare_ms,
        "rounds": float(ours.rounds),
        "torch_timer_runs": float(theirs.number_per_run * len(theirs.raw_times)),
    }
