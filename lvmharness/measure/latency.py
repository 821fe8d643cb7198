"""The timing core.

Rules it enforces (each one a bug somebody shipped):
  * every clock read is preceded by a device synchronize, so queued GPU work is inside the interval — one code
    path for every device (CUDA events are markers recorded inside that path, not a branch of their own);
  * on CUDA, events recorded on the case device's current stream bracket the work too, giving device time beside
    host time, and rounds run with the case's device current (``cuda:N``, not whatever device is current);
  * warm-up happens once per input shape (cudnn autotuning, allocator growth and caches are per shape),
    for at least ``warmup_rounds`` and ``warmup_s``;
  * raw samples are kept; statistics are median / IQR / p90 / p99 / mean / stdev with a high-variance flag;
  * the number of measured rounds comes from a time budget clamped to [min_rounds, max_rounds];
  * what the process got during the measured rounds (CPU share, other processes' load, waits for a CPU, other GPU
    processes) is measured over the same window and a contended window is flagged (``measure.contention``).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch

from lvmharness.core.errors import UserError
from lvmharness.core.oom import is_oom
from lvmharness.core.stats import percentile
from lvmharness.measure.budget import TimingConfig
from lvmharness.measure.contention import Contention, Window
from lvmharness.models.aliases import ModelSpec
from lvmharness.models.build import create_model, resolve
from lvmharness.runtime.devices import on_device, resolve_device, synchronizer
from lvmharness.runtime.execution import ExecOptions, Prepared, numerics_settings

# IQR / median above this marks a measurement as noisy. ``pyperf check`` (Python's benchmark runner) warns when the
# standard deviation is 10% of the mean or more; IQR/median is that rule made robust to the long right tail of timings.
HIGH_VARIANCE_REL_IQR = 0.10

RoundFn = Callable[[], None]
# A round driver: calls a round function ``n`` times. The default is a plain loop; pytest-benchmark's pedantic mode
# is another. ("runner" in this package always means this, never a model.)
Runner = Callable[[RoundFn, int], None]


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
    contention: Contention | None = None  # what the process got over the measured rounds

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


class Marks(Protocol):
    """Device-side markers placed inside each timed round (between the two synchronized clock reads)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def elapsed_ms(self) -> list[float] | None: ...


class NoMarks:
    """Off CUDA: there is no device clock to read."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def elapsed_ms(self) -> list[float] | None:
        return None


class CudaEventMarks:
    """CUDA events recorded on the current stream *of the case's device* (``Event.record()`` without a stream
    would use the current device's stream: for ``cuda:N`` an idle stream of another GPU)."""

    def __init__(self, device: torch.device) -> None:
        self.stream = torch.cuda.current_stream(device)
        self.pairs: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._open: torch.cuda.Event | None = None

    def start(self) -> None:
        self._open = torch.cuda.Event(enable_timing=True)
        self._open.record(self.stream)

    def stop(self) -> None:
        end = torch.cuda.Event(enable_timing=True)
        end.record(self.stream)
        assert self._open is not None
        self.pairs.append((self._open, end))

    def elapsed_ms(self) -> list[float] | None:
        # Both events have completed: the synchronized clock read after each round waited for the device.
        return [a.elapsed_time(b) for a, b in self.pairs]


def default_marks(device: torch.device) -> Marks:
    return CudaEventMarks(device) if device.type == "cuda" else NoMarks()


class Timer:
    """Times a no-argument callable in synchronized rounds; one round = one call of ``fn``.

    ``clock``, ``sync`` and ``marks`` (the device markers of each round) are injectable so tests can verify, on any
    machine, the order of calls every device goes through: sync, clock, marks.start, work, marks.stop, sync, clock.
    """

    def __init__(
        self,
        device: torch.device,
        config: TimingConfig | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
        sync: Callable[[], None] | None = None,
        marks: Callable[[], Marks] | None = None,
    ) -> None:
        self.device = device
        self.config = config or TimingConfig()
        self._clock = clock
        self._sync = sync if sync is not None else synchronizer(device)
        self._marks = marks or (lambda: default_marks(device))
        self._warm: dict[Hashable, _Warm] = {}

    def now(self) -> float:
        """Seconds, after waiting for all queued device work. The only way this class reads its clock."""
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
        with on_device(self.device):
            warm = self.warm_up(fn, key)
            n = rounds if rounds is not None else self.plan_rounds(key)
            host: list[float] = []
            marks = self._marks()

            def one_round() -> None:
                t0 = self.now()
                marks.start()
                fn()
                marks.stop()
                t1 = self.now()
                host.append((t1 - t0) * 1e3)

            window = Window(self.device, torch.get_num_threads())
            with window:
                (runner or _loop_runner)(one_round, n)
            if not host:
                raise RuntimeError("the runner ran no rounds; nothing was measured")
            device_ms = marks.elapsed_ms() or None
        return TimingResult(
            samples_ms=host,
            device_samples_ms=device_ms,
            warmup_rounds=warm.rounds,
            warmup_s=warm.seconds,
            stats=Stats.of(host),
            device_stats=Stats.of(device_ms) if device_ms else None,
            contention=window.result,
        )


def settings(device: torch.device) -> dict[str, Any]:
    """Every global setting that changes a timing, for the record's provenance."""
    out = numerics_settings()
    if device.type == "cuda":
        out["cuda_events"] = True
    return out


@dataclass(frozen=True)
class ForwardCase:
    batch_size: int
    img_size: int
    seed: int = 0


@dataclass
class LatencyResult:
    """Forward latency of one case: raw rounds, their statistics, and what produced them."""

    case: ForwardCase
    timing: TimingResult
    config: TimingConfig
    settings: dict[str, Any]
    execution: dict[str, Any]
    compile_values: dict[str, float] = field(default_factory=dict)

    @property
    def throughput_img_s(self) -> float:
        """Images ÷ wall time over the measured rounds (not 1 / latency: a batch of B counts B images)."""
        total = self.timing.total_s
        return self.case.batch_size * self.timing.rounds / total if total > 0 else math.inf

    def values(self) -> dict[str, Any]:
        res = self.timing
        out: dict[str, Any] = res.stats.values("latency_ms")
        out["latency_ms_p95"] = percentile(res.samples_ms, 95)
        out["throughput_img_s"] = self.throughput_img_s
        out["samples"] = res.samples_ms
        out.update(self.compile_values)
        if res.device_stats is not None:
            out.update(res.device_stats.values("device_latency_ms"))
            out["device_samples"] = res.device_samples_ms
        if res.contention is not None:
            out.update(res.contention.values())
        return out

    def provenance(self) -> dict[str, Any]:
        res = self.timing
        return {
            "timer": "lvmharness.measure.latency.Timer",
            "clock": "time.perf_counter, synchronized before each read",
            "mode": "eval + torch.inference_mode",
            "rounds": res.rounds,
            "warmup_rounds": res.warmup_rounds,
            "warmup_s": res.warmup_s,
            "iqr_rel": res.stats.iqr_rel,
            "high_variance": res.stats.high_variance,
            "config": asdict(self.config),
            "settings": self.settings,
            "execution": self.execution,
            "contention": res.contention.provenance() if res.contention is not None else None,
        }


def forward_latency(prepared: Prepared, case: ForwardCase, timer: Timer, *, runner: Runner | None = None
                    ) -> LatencyResult:
    """Time the forward of a prepared model (on the timer's device, eval mode) on one fixed random batch.

    ``prepared`` carries dtype/AMP, channels_last and torch.compile (a bare module would silently run as fp32 —
    and converting a cached model here would change it under the next case — so only a :class:`Prepared` model
    is accepted). ``latency_ms_*`` is the time of one synchronized forward of the whole batch;
    ``throughput_img_s`` = images / wall time over the measured rounds. The input is already on the device: the
    transfer is not timed here (per-instance latency times it).
    """
    if not isinstance(prepared, Prepared):
        raise TypeError(
            f"forward_latency takes a Prepared model (lvmharness.runtime.execution.Prepared), "
            f"got {type(prepared).__name__}; "
            "wrap it: Prepared(model, device, ExecOptions(dtype=...))"
        )
    if prepared.device != timer.device:
        raise ValueError(f"the model is prepared for {prepared.device} but the timer times {timer.device}")
    prepared.model.eval()
    x = prepared.make_input(case.batch_size, case.img_size, case.seed)
    fn = prepared.forward_fn(x)  # under compile, the first call (the compile) happens and is timed here
    res = timer.measure(fn, key=(tuple(x.shape), prepared.options), runner=runner)
    return LatencyResult(case, res, timer.config, settings(timer.device), prepared.provenance(),
                         prepared.record_values(x))


@dataclass
class SpecLatency:
    """``forward_latency`` of a registry/timm model built from its name: what was built, where, and the result."""

    spec: ModelSpec
    device: torch.device
    img_size: int
    options: ExecOptions
    result: LatencyResult


def latency_from_spec(model: str, *, device: str = "auto", options: ExecOptions | None = None, batch_size: int = 1,
                      img_size: int | None = None, budget_s: float = 2.0) -> SpecLatency:
    """Build a registry/timm model and time its forward (what ``lvm latency`` runs); running out of memory is a
    ValueError that names the batch size and input side to lower."""
    spec = resolve(model)
    dev = resolve_device(device)
    size = img_size if img_size is not None else spec.default_img_size
    opts = options or ExecOptions()
    prepared = Prepared(create_model(spec, img_size=size, device=dev).eval(), dev, opts)
    timer = Timer(dev, TimingConfig(budget_s=budget_s))
    try:
        result = forward_latency(prepared, ForwardCase(batch_size, size), timer)
    except Exception as exc:
        if not is_oom(exc):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"out of memory at --batch-size {batch_size}, {size}px on {dev} ({first}); "
                         "try a smaller --batch-size or --img-size") from exc
    return SpecLatency(spec, dev, size, opts, result)
