"""The timing core's mechanics, checked with an injected clock and synchronizer."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch

from lvmharness.execution import ExecOptions, Prepared
from lvmharness.measure.latency import ForwardCase, Stats, Timer, TimingConfig, forward_latency
from lvmharness.stats import percentile


class FakeDevice:
    """A clock that advances only when work runs, and a log of sync/clock/work events in order."""

    def __init__(self, work_s: list[float] | None = None) -> None:
        self.t = 0.0
        self.log: list[str] = []
        self.work = list(work_s or [])
        self.calls = 0

    def clock(self) -> float:
        self.log.append("clock")
        return self.t

    def sync(self) -> None:
        self.log.append("sync")

    def marks(self) -> FakeMarks:
        return FakeMarks(self.log)

    def fn(self) -> None:
        self.log.append("work")
        self.t += self.work[self.calls] if self.calls < len(self.work) else 0.010
        self.calls += 1


class FakeMarks:
    """Device markers (CUDA events on a GPU) that only log where the timer places them."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def start(self) -> None:
        self.log.append("mark_start")

    def stop(self) -> None:
        self.log.append("mark_stop")

    def elapsed_ms(self) -> list[float] | None:
        return None


def make(cfg: TimingConfig, dev: FakeDevice) -> Timer:
    return Timer(torch.device("cpu"), cfg, clock=dev.clock, sync=dev.sync, marks=dev.marks)


def test_every_clock_read_follows_a_sync() -> None:
    dev = FakeDevice()
    timer = make(TimingConfig(warmup_rounds=2, warmup_s=0, budget_s=0.05, min_rounds=3, max_rounds=10), dev)
    timer.measure(dev.fn, key="a")
    reads = [i for i, e in enumerate(dev.log) if e == "clock"]
    assert reads, "the timer read no clock"
    assert all(dev.log[i - 1] == "sync" for i in reads)
    assert dev.log.count("work") == dev.calls


def test_each_round_is_sync_clock_mark_work_mark_sync_clock() -> None:
    """One code path for every device: the device markers (CUDA events) sit inside two synchronized clock reads,
    so on a GPU the host interval contains the queued work and both events."""
    dev = FakeDevice()
    cfg = TimingConfig(warmup_rounds=1, warmup_s=0, budget_s=0, min_rounds=3, max_rounds=3)
    make(cfg, dev).measure(dev.fn, key="a")
    first_mark = dev.log.index("mark_start")
    timed = dev.log[first_mark - 2 :]
    assert timed == ["sync", "clock", "mark_start", "work", "mark_stop", "sync", "clock"] * 3


def test_warm_up_happens_once_per_shape() -> None:
    dev = FakeDevice()
    cfg = TimingConfig(warmup_rounds=3, warmup_s=0, budget_s=0.0, min_rounds=4, max_rounds=4)
    timer = make(cfg, dev)
    first = timer.measure(dev.fn, key=(1, 3, 32, 32))
    assert (first.warmup_rounds, first.rounds, dev.calls) == (3, 4, 7)
    again = timer.measure(dev.fn, key=(1, 3, 32, 32))
    assert (again.warmup_rounds, dev.calls) == (0, 11)
    other = timer.measure(dev.fn, key=(2, 3, 32, 32))
    assert (other.warmup_rounds, dev.calls) == (3, 18)


def test_warm_up_lasts_at_least_warmup_s() -> None:
    dev = FakeDevice()  # 10 ms per call
    timer = make(TimingConfig(warmup_rounds=1, warmup_s=0.095, budget_s=0, min_rounds=1, max_rounds=1), dev)
    res = timer.measure(dev.fn, key="k")
    assert res.warmup_rounds == 10  # 10 x 10 ms >= 95 ms


def test_rounds_follow_the_budget_within_min_and_max() -> None:
    cfg = TimingConfig(warmup_rounds=2, warmup_s=0, budget_s=0.1, min_rounds=3, max_rounds=50)
    dev = FakeDevice()  # 10 ms per round: budget 100 ms -> 10 rounds
    assert make(cfg, dev).measure(dev.fn, "k").rounds == 10
    slow = FakeDevice([1.0] * 100)  # 1 s per round: budget asks 1, min is 3
    assert make(cfg, slow).measure(slow.fn, "k").rounds == 3
    fast = FakeDevice([1e-5] * 1000)  # budget asks 10000, max is 50
    assert make(cfg, fast).measure(fast.fn, "k").rounds == 50


def test_the_steady_state_estimate_ignores_the_slow_first_warm_up_rounds() -> None:
    # Warm-up: two 1 s rounds (one-off costs), then two steady rounds of 2^-7 s (7.8125 ms, exact in binary so the
    # clock sums carry no rounding). The plan must come from the steady rounds: budget 10 x 2^-7 s / 2^-7 s = 10
    # rounds. An estimate that included the first rounds (1 s, or the median of all four, ~0.5 s) would plan
    # ceil(0.078 / 0.5) = 1 round, clamped up to min_rounds = 3.
    step = 2.0**-7
    dev = FakeDevice([1.0, 1.0, step, step] + [step] * 20)
    cfg = TimingConfig(warmup_rounds=4, warmup_s=0, budget_s=10 * step, min_rounds=3, max_rounds=50)
    res = make(cfg, dev).measure(dev.fn, "k")
    assert res.warmup_rounds == 4
    assert res.rounds == 10


def test_samples_are_the_raw_per_round_times_in_ms() -> None:
    work = [0.5, 0.5, 0.001, 0.002, 0.003, 0.004]  # two warm-up rounds, then four measured
    dev = FakeDevice(work)
    cfg = TimingConfig(warmup_rounds=2, warmup_s=0, budget_s=0, min_rounds=4, max_rounds=4)
    res = make(cfg, dev).measure(dev.fn, "k")
    assert res.samples_ms == pytest.approx([1.0, 2.0, 3.0, 4.0])
    assert res.stats.p50 == pytest.approx(2.5)
    assert res.device_samples_ms is None  # no CUDA events off CUDA


def test_an_external_runner_drives_the_same_rounds() -> None:
    dev = FakeDevice()
    calls: list[int] = []

    def runner(fn: object, n: int) -> None:
        calls.append(n)
        for _ in range(n):
            fn()  # type: ignore[operator]

    res = make(TimingConfig(warmup_rounds=1, warmup_s=0, min_rounds=5, max_rounds=5), dev).measure(
        dev.fn, "k", runner=runner
    )
    assert calls == [5] and res.rounds == 5


def test_percentiles_match_numpy_linear() -> None:
    rng = np.random.default_rng(0)
    data = list(rng.lognormal(size=37))
    for q in (0, 25, 50, 90, 99, 100):
        assert percentile(data, q) == pytest.approx(float(np.percentile(data, q)))
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)


def test_stats_on_known_samples() -> None:
    s = Stats.of([1.0, 2.0, 3.0, 4.0, 100.0])
    assert (s.n, s.p50, s.q1, s.q3, s.iqr, s.min, s.max) == (5, 3.0, 2.0, 4.0, 2.0, 1.0, 100.0)
    assert s.mean == pytest.approx(22.0)
    assert s.stdev == pytest.approx(statistics.stdev([1, 2, 3, 4, 100]))
    assert s.p90 == pytest.approx(61.6)
    assert s.p99 == pytest.approx(96.16)
    assert s.high_variance  # IQR/median = 0.67
    assert not Stats.of([10.0, 10.1, 10.2, 10.3]).high_variance  # IQR/median = 1.5 %
    assert Stats.of([5.0]).stdev == 0.0


def test_config_rejects_impossible_round_limits() -> None:
    with pytest.raises(ValueError, match="min_rounds"):
        TimingConfig(min_rounds=10, max_rounds=5)


class SteppingClock:
    """A clock that advances exactly ``step_s`` at every read: a round (two reads) lasts ``step_s``."""

    def __init__(self, step_s: float) -> None:
        self.step_s = step_s
        self.t = 0.0

    def __call__(self) -> float:
        self.t += self.step_s
        return self.t


def test_forward_latency_on_a_real_tiny_model() -> None:
    from lvmharness.models import create_model

    cpu = torch.device("cpu")
    prepared = Prepared(create_model("smoke_resnet"), cpu, ExecOptions())
    # The model really runs; the clock is made to say every round took 5 ms, so the expected figures follow by
    # hand: latency 5 ms, and 4 images every 5 ms = 800 images/s.
    timer = Timer(cpu, TimingConfig(warmup_rounds=1, warmup_s=0, budget_s=0, min_rounds=6, max_rounds=6),
                  clock=SteppingClock(0.005))
    result = forward_latency(prepared, ForwardCase(batch_size=4, img_size=32), timer)
    values, prov = result.values(), result.provenance()
    assert values["samples"] == pytest.approx([5.0] * 6)
    assert values["latency_ms_p50"] == pytest.approx(5.0)
    assert values["throughput_img_s"] == pytest.approx(800.0)
    assert prov["rounds"] == 6
    assert prov["settings"]["torch_num_threads"] == torch.get_num_threads()
    assert {"cudnn_benchmark", "cuda_matmul_allow_tf32", "cudnn_allow_tf32"} <= set(prov["settings"])
    # What the process got over the rounds is in every timed record.
    assert isinstance(values["contended"], bool) and values["cpu_share"] >= 0
    assert prov["contention"]["threads"] == torch.get_num_threads()


def test_forward_latency_takes_only_a_prepared_model() -> None:
    from lvmharness.models import create_model

    cpu = torch.device("cpu")
    with pytest.raises(TypeError, match="takes a Prepared model"):
        forward_latency(create_model("smoke_resnet"), ForwardCase(1, 32), Timer(cpu))  # type: ignore[arg-type]


@pytest.mark.cuda
def test_cuda_events_are_recorded_beside_host_time() -> None:
    from lvmharness.models import create_model

    # The last GPU: on a multi-GPU machine that is cuda:N with N != the current device (0), where events recorded
    # on the current device's stream would bracket an idle stream.
    dev = torch.device("cuda", torch.cuda.device_count() - 1)
    prepared = Prepared(create_model("smoke_vit", device=dev), dev, ExecOptions())
    timer = Timer(dev, TimingConfig(warmup_rounds=2, warmup_s=0, budget_s=0.05, min_rounds=5))
    values = forward_latency(prepared, ForwardCase(batch_size=4, img_size=32), timer).values()
    assert len(values["device_samples"]) == len(values["samples"])
    # Host time brackets the events, so it cannot be shorter (allow 50 us of clock granularity); the events
    # bracket the forward's kernels, so device time is far above an empty interval's few microseconds.
    assert values["latency_ms_p50"] + 0.05 >= values["device_latency_ms_p50"] > 0.02


def test_fidelity_ratios_are_ours_over_each_reference() -> None:
    from lvmharness.measure.latency import FidelityResult, TimingResult

    ours = TimingResult([1.0, 2.0, 3.0], None, 0, 0.0, Stats.of([1.0, 2.0, 3.0]))
    values = FidelityResult(ours, torch_timer_ms_median=4.0, torch_timer_runs=7, bare_loop_ms=[1.0, 1.0, 1.0]).values()
    # ours p50 = 2 ms; torch.utils.benchmark median 4 ms; bare loop p50 1 ms
    assert values["latency_ms_p50"] == 2.0 and values["bare_loop_ms_p50"] == 1.0
    assert values["ratio_ours_vs_torch_timer"] == pytest.approx(0.5)
    assert values["ratio_ours_vs_bare_loop"] == pytest.approx(2.0)
    assert (values["rounds"], values["torch_timer_runs"]) == (3.0, 7.0)


def test_fidelity_runs_the_three_timers_on_one_callable() -> None:
    from lvmharness.measure.latency import fidelity

    calls = []
    timer = Timer(torch.device("cpu"), TimingConfig(warmup_rounds=1, warmup_s=0, budget_s=0, min_rounds=4,
                                                    max_rounds=4))
    result = fidelity(lambda: calls.append(1), timer, key="f")
    assert result.ours.rounds == 4 and len(result.bare_loop_ms) == 4  # the bare loop runs as many rounds as ours
    assert result.torch_timer_runs >= 1
    # warm-up 1 + ours 4 + bare 4 + torch.utils.benchmark's runs (its autorange calibration runs some more)
    assert len(calls) >= 1 + 4 + 4 + result.torch_timer_runs
    assert "torch.utils.benchmark.Timer" in result.provenance()["reference_timers"][0]
