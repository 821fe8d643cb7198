"""The timing core's mechanics, checked with an injected clock and synchronizer."""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import lvmharness.measure.fidelity
from lvmharness.core.stats import percentile
from lvmharness.measure import latency
from lvmharness.measure.budget import TimingConfig
from lvmharness.measure.contention import Contention
from lvmharness.measure.fidelity import FidelityResult, fidelity
from lvmharness.measure.latency import (
    ForwardCase,
    LatencyResult,
    NoMarks,
    Stats,
    Timer,
    TimingResult,
    default_marks,
    forward_latency,
    settings,
)
from lvmharness.runtime.execution import ExecOptions, Prepared, numerics_settings


class FakeDevice:
    """A clock that advances only when work runs, and a log of sync/clock/work events in order."""

    def __init__(self, work_s: list[float] | None = None, t0: float = 0.0) -> None:
        self.t = t0
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


@pytest.mark.parametrize("device", ["cpu", "cuda:1", "mps"])
def test_every_device_type_goes_through_the_same_synchronized_rounds(
    monkeypatch: pytest.MonkeyPatch, device: str
) -> None:
    """No device has a branch of its own: a clock read without the sync before it (say, only on CUDA) would leave
    queued GPU work outside the interval. Checked without a GPU: the fake device's sync, clock and marks stand in
    for CUDA's, and ``on_device`` (which makes ``cuda:1`` the current device) is replaced by a recorder."""
    entered: list[torch.device] = []

    @contextlib.contextmanager
    def current(d: torch.device) -> Iterator[None]:
        entered.append(d)
        yield

    monkeypatch.setattr(latency, "on_device", current)
    dev = FakeDevice()
    cfg = TimingConfig(warmup_rounds=2, warmup_s=0, budget_s=0, min_rounds=3, max_rounds=3)
    Timer(torch.device(device), cfg, clock=dev.clock, sync=dev.sync, marks=dev.marks).measure(dev.fn, "a")
    warm_up = ["sync", "clock"] + ["sync", "clock", "work", "sync", "clock"] * 2  # start, then 2 rounds
    rounds = ["sync", "clock", "mark_start", "work", "mark_stop", "sync", "clock"] * 3
    assert dev.log == warm_up + rounds
    assert entered == [torch.device(device)]  # warm-up and rounds both run with the case's device current


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


@pytest.fixture
def one_thread() -> Iterator[None]:
    """A real model's forward on one intra-op thread. Mutation testing forks this process for every mutant; in a
    forked child the first parallel op waits forever for the OpenMP pool the parent started (fork copies no
    threads). A 32-pixel model needs no pool."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_forward_latency_on_a_real_tiny_model(one_thread: None) -> None:
    from lvmharness.models.build import create_model

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
    from lvmharness.models.build import create_model

    cpu = torch.device("cpu")
    with pytest.raises(TypeError, match="takes a Prepared model"):
        forward_latency(create_model("smoke_resnet"), ForwardCase(1, 32), Timer(cpu))  # type: ignore[arg-type]


@pytest.mark.cuda
def test_cuda_events_are_recorded_beside_host_time() -> None:
    from lvmharness.models.build import create_model

    # On a multi-GPU machine events recorded on the current device's (cuda:0) stream would bracket an idle stream.
    # cuda:1 where two GPUs exist (the case this test is for: events on a GPU other than the current one).
    dev = torch.device("cuda", 1 if torch.cuda.device_count() >= 2 else 0)
    if dev.index == 1:
        assert torch.cuda.current_device() == 0
    prepared = Prepared(create_model("smoke_vit", device=dev), dev, ExecOptions())
    timer = Timer(dev, TimingConfig(warmup_rounds=2, warmup_s=0, budget_s=0.05, min_rounds=5))
    values = forward_latency(prepared, ForwardCase(batch_size=4, img_size=32), timer).values()
    assert len(values["device_samples"]) == len(values["samples"])
    # Host time brackets the events, so it cannot be shorter (allow 50 us of clock granularity); the events
    # bracket the forward's kernels, so device time is far above an empty interval's few microseconds.
    assert values["latency_ms_p50"] + 0.05 >= values["device_latency_ms_p50"] > 0.02


def test_fidelity_ratios_are_ours_over_each_reference() -> None:

    ours = TimingResult([1.0, 2.0, 3.0], None, 0, 0.0, Stats.of([1.0, 2.0, 3.0]))
    values = FidelityResult(ours, torch_timer_ms_median=4.0, torch_timer_runs=7, bare_loop_ms=[1.0, 1.0, 1.0]).values()
    # ours p50 = 2 ms; torch.utils.benchmark median 4 ms; bare loop p50 1 ms
    assert values["latency_ms_p50"] == 2.0 and values["bare_loop_ms_p50"] == 1.0
    assert values["ratio_ours_vs_torch_timer"] == pytest.approx(0.5)
    assert values["ratio_ours_vs_bare_loop"] == pytest.approx(2.0)
    assert (values["rounds"], values["torch_timer_runs"]) == (3.0, 7.0)


def test_fidelity_runs_the_three_timers_on_one_callable() -> None:

    calls = []
    timer = Timer(torch.device("cpu"), TimingConfig(warmup_rounds=1, warmup_s=0, budget_s=0, min_rounds=4,
                                                    max_rounds=4))
    result = fidelity(lambda: calls.append(1), timer, key="f")
    assert result.ours.rounds == 4 and len(result.bare_loop_ms) == 4  # the bare loop runs as many rounds as ours
    assert result.torch_timer_runs >= 1
    # warm-up 1 + ours 4 + bare 4 + torch.utils.benchmark's runs (its autorange calibration runs some more)
    assert len(calls) >= 1 + 4 + 4 + result.torch_timer_runs
    assert "torch.utils.benchmark.Timer" in result.provenance()["reference_timers"][0]


# ---------------------------------------------------------------------------------------------------------------
# Stats: every figure checked against a hand computation. percentile() is linear interpolation between closest
# ranks: for n sorted samples, q lands at position (n - 1) * q / 100.


def test_stats_of_no_samples_says_so() -> None:
    with pytest.raises(ValueError, match=r"^no samples to summarize$"):
        Stats.of([])


def test_stats_values_name_every_figure_under_the_prefix() -> None:
    # [2, 3, 4, 5, 6]: positions p50 -> 2 (4), p90 -> 3.6 (5.6), p99 -> 3.96 (5.96), q1 -> 1 (3), q3 -> 3 (5);
    # mean 4; sample stdev sqrt((4 + 1 + 0 + 1 + 4) / 4) = sqrt(2.5).
    s = Stats.of([2.0, 3.0, 4.0, 5.0, 6.0])
    expected = {"p50": 4.0, "p90": 5.6, "p99": 5.96, "iqr": 2.0, "mean": 4.0, "stdev": math.sqrt(2.5),
                "min": 2.0, "max": 6.0}
    assert s.values() == pytest.approx({f"latency_ms_{k}": v for k, v in expected.items()})
    assert s.values("device_latency_ms") == pytest.approx({f"device_latency_ms_{k}": v for k, v in expected.items()})
    assert (s.n, s.q1, s.q3, s.iqr_rel) == (5, 3.0, 5.0, 0.5)


def test_high_variance_means_relative_iqr_strictly_above_the_threshold() -> None:
    # [2, 3, 4, 5, 6]: IQR 2 / median 4 = 0.5 exactly.
    assert not Stats.of([2.0, 3.0, 4.0, 5.0, 6.0], threshold=0.5).high_variance
    assert Stats.of([2.0, 3.0, 4.0, 5.0, 6.0], threshold=0.49).high_variance
    # The default threshold, 10 %: [9, 10, 11] has q1 9.5, q3 10.5, IQR 1 / median 10 = 0.1, on the line, not above.
    at_line = Stats.of([9.0, 10.0, 11.0])
    assert at_line.iqr_rel == 0.1 and not at_line.high_variance
    # q3 moves to 10.55: IQR 1.05 / 10 = 0.105 > 0.1.
    assert Stats.of([9.0, 10.0, 11.1]).high_variance


def test_relative_iqr_of_sub_millisecond_samples() -> None:
    # Binary-exact samples: q1 0.375, q3 0.625, median 0.5 -> IQR/median = 0.25 / 0.5 = 0.5.
    s = Stats.of([0.25, 0.5, 0.75])
    assert (s.p50, s.iqr, s.iqr_rel, s.high_variance) == (0.5, 0.25, 0.5, True)


def test_a_zero_median_has_no_relative_spread() -> None:
    # [0, 0, 0, 4]: median 0, q3 at position 2.25 = 0 + 0.25 * 4 = 1, so IQR 1; IQR / 0 is undefined: reported 0.
    s = Stats.of([0.0, 0.0, 0.0, 4.0])
    assert (s.p50, s.iqr, s.iqr_rel, s.high_variance) == (0.0, 1.0, 0.0, False)


def test_stdev_of_two_samples_is_the_sample_stdev() -> None:
    # sum of squared deviations from the mean 2: 1 + 1 = 2; / (n - 1) = 2; sqrt -> sqrt(2).
    assert Stats.of([1.0, 3.0]).stdev == pytest.approx(math.sqrt(2.0))


# ---------------------------------------------------------------------------------------------------------------
# Timer: warm-up and round planning on the fake device (its clock moves only when work runs).

STEP = 2.0**-7  # 7.8125 ms: exact in binary, so sums of steps on the fake clock carry no rounding


def test_timer_defaults() -> None:
    cpu = torch.device("cpu")
    assert Timer(cpu).config == TimingConfig()
    cfg = TimingConfig(min_rounds=2, max_rounds=3)
    assert Timer(cpu, cfg).config == cfg
    assert isinstance(default_marks(cpu), NoMarks) and NoMarks().elapsed_ms() is None


def test_is_warm_per_key() -> None:
    dev = FakeDevice()
    timer = make(TimingConfig(warmup_rounds=1, warmup_s=0, min_rounds=1, max_rounds=1), dev)
    assert not timer.is_warm("a")
    timer.measure(dev.fn, "a")
    assert timer.is_warm("a") and not timer.is_warm("b")


def test_warm_up_reports_its_rounds_and_seconds_once() -> None:
    dev = FakeDevice([STEP] * 20)
    cfg = TimingConfig(warmup_rounds=3, warmup_s=0, budget_s=0, min_rounds=2, max_rounds=2)
    timer = make(cfg, dev)
    first = timer.measure(dev.fn, "k")
    assert (first.warmup_rounds, first.warmup_s) == (3, 3 * STEP)
    again = timer.measure(dev.fn, "k")
    assert (again.warmup_rounds, again.warmup_s) == (0, 0.0)


def test_warm_up_of_a_warm_key_runs_nothing_and_keeps_the_estimate() -> None:
    dev = FakeDevice([STEP] * 20)
    timer = make(TimingConfig(warmup_rounds=2, warmup_s=0), dev)
    first = timer.warm_up(dev.fn, "k")
    assert (first.round_s, first.rounds, first.seconds, dev.calls) == (STEP, 2, 2 * STEP, 2)
    again = timer.warm_up(dev.fn, "k")
    assert (again.round_s, again.rounds, again.seconds, dev.calls) == (STEP, 0, 0.0, 2)


def test_warm_up_stops_at_max_warmup_rounds() -> None:
    dev = FakeDevice()  # 10 ms per call: warmup_s = 100 s is never reached
    cfg = TimingConfig(warmup_rounds=1, warmup_s=100.0, max_warmup_rounds=5, min_rounds=1, max_rounds=1)
    assert make(cfg, dev).measure(dev.fn, "k").warmup_rounds == 5


def test_warm_up_time_is_measured_from_its_start_not_from_clock_zero() -> None:
    # The clock reads 1024 s when warm-up starts (perf_counter's origin is arbitrary). warmup_s = 4 steps: the
    # fourth round ends exactly 4 steps after the start, which is enough (at least warmup_s), so 4 rounds, not 5.
    dev = FakeDevice([STEP] * 20, t0=1024.0)
    cfg = TimingConfig(warmup_rounds=1, warmup_s=4 * STEP, budget_s=0, min_rounds=1, max_rounds=1)
    res = make(cfg, dev).measure(dev.fn, "k")
    assert (res.warmup_rounds, res.warmup_s) == (4, 4 * STEP)


def test_no_warm_up_leaves_no_estimate_so_max_rounds_are_run() -> None:
    # max_warmup_rounds = 0: no warm-up round, so no time per round to divide the budget by: max_rounds.
    dev = FakeDevice()
    cfg = TimingConfig(warmup_rounds=0, warmup_s=0, max_warmup_rounds=0, budget_s=0.05, min_rounds=3, max_rounds=7)
    res = make(cfg, dev).measure(dev.fn, "k")
    assert (res.warmup_rounds, res.warmup_s, res.rounds, dev.calls) == (0, 0.0, 7, 7)


def test_the_steady_state_estimate_is_the_median_of_the_later_half() -> None:
    # Five warm-up rounds: 1 s, 1 s, 1 s, then two steady rounds of STEP. The later half is the last three
    # (rounds 3..5: 1 s, STEP, STEP), median STEP, so budget 10 STEP plans 10 rounds. The last four (1, 1, STEP,
    # STEP) would give a median near 0.5 s: ceil(0.078 / 0.5) = 1 round, clamped up to min_rounds = 3.
    dev = FakeDevice([1.0, 1.0, 1.0, STEP, STEP] + [STEP] * 20)
    cfg = TimingConfig(warmup_rounds=5, warmup_s=0, budget_s=10 * STEP, min_rounds=3, max_rounds=50)
    res = make(cfg, dev).measure(dev.fn, "k")
    assert (res.warmup_rounds, res.rounds) == (5, 10)


def test_a_shape_without_an_estimate_plans_max_rounds() -> None:
    cfg = TimingConfig(budget_s=0.05, min_rounds=3, max_rounds=50)
    assert make(cfg, FakeDevice()).plan_rounds("never warmed") == 50


def test_work_too_fast_for_the_clock_plans_max_rounds() -> None:
    # Every round reads 0 s on the clock: the budget cannot be divided by the round time; run max_rounds.
    dev = FakeDevice([0.0] * 100)
    cfg = TimingConfig(warmup_rounds=2, warmup_s=0, budget_s=0.05, min_rounds=3, max_rounds=20)
    assert make(cfg, dev).measure(dev.fn, "k").rounds == 20


def test_explicit_rounds_override_the_plan() -> None:
    dev = FakeDevice()  # the plan would be budget 0.1 s / 10 ms = 10 rounds
    cfg = TimingConfig(warmup_rounds=1, warmup_s=0, budget_s=0.1, min_rounds=3, max_rounds=50)
    assert make(cfg, dev).measure(dev.fn, "k", rounds=7).rounds == 7


def test_a_runner_that_runs_no_round_is_an_error() -> None:
    dev = FakeDevice()
    timer = make(TimingConfig(warmup_rounds=1, warmup_s=0, min_rounds=3, max_rounds=3), dev)
    with pytest.raises(RuntimeError, match=r"^the runner ran no rounds; nothing was measured$"):
        timer.measure(dev.fn, "k", runner=lambda fn, n: None)


class DeviceTimes(FakeMarks):
    """Device markers that report the given device times (what CUDA events give on a GPU)."""

    def __init__(self, log: list[str], times: list[float]) -> None:
        super().__init__(log)
        self.times = times

    def elapsed_ms(self) -> list[float] | None:
        return list(self.times)


def test_device_times_from_the_marks_are_kept_with_their_statistics() -> None:
    dev = FakeDevice()
    device_ms = [4.0, 1.0, 3.0]  # median 3, q1 2, q3 3.5
    timer = Timer(torch.device("cpu"), TimingConfig(warmup_rounds=1, warmup_s=0, min_rounds=3, max_rounds=3),
                  clock=dev.clock, sync=dev.sync, marks=lambda: DeviceTimes(dev.log, device_ms))
    res = timer.measure(dev.fn, "k")
    assert res.device_samples_ms == device_ms
    assert res.device_stats is not None
    assert (res.device_stats.n, res.device_stats.p50, res.device_stats.q1, res.device_stats.q3) == (3, 3.0, 2.0, 3.5)


def test_marks_with_no_device_times_give_none() -> None:
    dev = FakeDevice()
    timer = Timer(torch.device("cpu"), TimingConfig(warmup_rounds=1, warmup_s=0, min_rounds=2, max_rounds=2),
                  clock=dev.clock, sync=dev.sync, marks=lambda: DeviceTimes(dev.log, []))
    res = timer.measure(dev.fn, "k")
    assert res.device_samples_ms is None and res.device_stats is None


def test_measure_records_what_the_process_got_over_the_rounds() -> None:
    dev = FakeDevice()
    res = make(TimingConfig(warmup_rounds=1, warmup_s=0, min_rounds=2, max_rounds=2), dev).measure(dev.fn, "k")
    assert res.contention is not None and res.contention.threads == torch.get_num_threads()


def test_the_contention_window_watches_the_timers_device(monkeypatch: pytest.MonkeyPatch) -> None:
    # On CUDA the window's device picks the GPU whose other processes and throttling it watches; here it is
    # only recorded (a window on a CPU device watches no GPU).
    seen: list[tuple[Any, int]] = []

    class SpyWindow(latency.Window):
        def __init__(self, device: Any, threads: int) -> None:
            seen.append((device, threads))
            super().__init__(device, threads)

    monkeypatch.setattr(latency, "Window", SpyWindow)
    dev = FakeDevice()
    make(TimingConfig(warmup_rounds=1, warmup_s=0, min_rounds=2, max_rounds=2), dev).measure(dev.fn, "k")
    assert seen == [(torch.device("cpu"), torch.get_num_threads())]


def test_cuda_devices_get_event_marks_on_that_device(monkeypatch: pytest.MonkeyPatch) -> None:
    # Which marks a device gets, checked without a GPU: CudaEventMarks itself needs one (CUDA events), so a
    # stand-in takes its place and records the device it is built for. On cuda:1 the events must be recorded on
    # cuda:1's stream: marks built for no device would record on the current device's (cuda:0) idle stream.
    class StandIn(NoMarks):
        def __init__(self, device: torch.device) -> None:
            self.device = device

    monkeypatch.setattr(latency, "CudaEventMarks", StandIn)
    marks = default_marks(torch.device("cuda", 1))
    assert isinstance(marks, StandIn) and marks.device == torch.device("cuda", 1)
    assert type(default_marks(torch.device("cpu"))) is NoMarks


def test_settings_mark_cuda_events_only_on_cuda() -> None:
    # Building the dict needs no GPU: it only looks at the device's type.
    assert settings(torch.device("cpu")) == numerics_settings()
    assert settings(torch.device("cuda", 0)) == {**numerics_settings(), "cuda_events": True}


# ---------------------------------------------------------------------------------------------------------------
# LatencyResult: values and provenance of a hand-built timing.


def hand_contention() -> Contention:
    # The window's wall time (20 ms, runner overhead included) differs from the rounds' sum (15 ms) on purpose:
    # throughput must come from the timed rounds.
    return Contention(wall_s=0.02, threads=2, cores=2, cpu_share=0.9, other_load_cores=0.125,
                      resolution_cores=None, steal_cores=None, run_wait_share=None)


def hand_timing(contention: Contention | None, device: list[float] | None) -> TimingResult:
    samples = [1.0, 2.0, 3.0, 4.0, 5.0]
    return TimingResult(samples, device, 2, 0.25, Stats.of(samples), Stats.of(device) if device else None,
                        contention)


def test_latency_values_of_known_rounds() -> None:
    cfg = TimingConfig(warmup_rounds=2, warmup_s=0, budget_s=0.01, min_rounds=5, max_rounds=5)
    result = LatencyResult(ForwardCase(batch_size=6, img_size=32), hand_timing(hand_contention(), [0.5, 1.5, 2.5]),
                           cfg, {}, {}, {"compile_first_call_ms": 12.0})
    # Samples 1..5 ms: p50 3, p90 at position 3.6 = 4.6, p95 at 3.8 = 4.8, p99 at 3.96 = 4.96, q1 2, q3 4, mean 3,
    # stdev sqrt((4 + 1 + 0 + 1 + 4) / 4) = sqrt(2.5). Throughput: 6 images x 5 rounds in 15 ms = 2000 images/s.
    # Device samples 0.5, 1.5, 2.5: p50 1.5, p90 at position 1.8 = 2.3, p99 at 1.98 = 2.48, IQR 2 - 1 = 1, stdev 1.
    expected = {
        "latency_ms_p50": 3.0, "latency_ms_p90": 4.6, "latency_ms_p99": 4.96, "latency_ms_iqr": 2.0,
        "latency_ms_mean": 3.0, "latency_ms_stdev": math.sqrt(2.5), "latency_ms_min": 1.0, "latency_ms_max": 5.0,
        "latency_ms_p95": 4.8, "throughput_img_s": 2000.0, "compile_first_call_ms": 12.0,
        "device_latency_ms_p50": 1.5, "device_latency_ms_p90": 2.3, "device_latency_ms_p99": 2.48,
        "device_latency_ms_iqr": 1.0, "device_latency_ms_mean": 1.5, "device_latency_ms_stdev": 1.0,
        "device_latency_ms_min": 0.5, "device_latency_ms_max": 2.5,
        "contended": False, "cpu_share": 0.9, "other_load_cores": 0.125,
    }
    values = result.values()
    # The raw rounds go into the record as they are.
    assert (values.pop("samples"), values.pop("device_samples")) == ([1.0, 2.0, 3.0, 4.0, 5.0], [0.5, 1.5, 2.5])
    assert values == pytest.approx(expected)


def test_latency_values_without_device_times_or_contention() -> None:
    result = LatencyResult(ForwardCase(2, 32), hand_timing(None, None), TimingConfig(), {}, {})
    values = result.values()
    assert not any(k.startswith("device_") for k in values) and "contended" not in values
    assert values["throughput_img_s"] == pytest.approx(2 * 5 / 0.015)  # 10 images in 15 ms


def test_latency_provenance_of_known_rounds() -> None:
    cfg = TimingConfig(warmup_rounds=2, warmup_s=0.125, max_warmup_rounds=9, budget_s=0.5, min_rounds=5,
                       max_rounds=6)
    c = hand_contention()
    result = LatencyResult(ForwardCase(2, 32), hand_timing(c, None), cfg, {"torch_num_threads": 2},
                           {"dtype_mode": "fp32"})
    prov = result.provenance()
    contention = prov.pop("contention")
    assert prov == {
        "timer": "lvmharness.measure.latency.Timer",
        "clock": "time.perf_counter, synchronized before each read",
        "mode": "eval + torch.inference_mode",
        "rounds": 5,
        "warmup_rounds": 2,
        "warmup_s": 0.25,
        "iqr_rel": pytest.approx(2 / 3),  # IQR 4 - 2 over median 3
        "high_variance": True,
        "config": {"warmup_rounds": 2, "warmup_s": 0.125, "max_warmup_rounds": 9, "budget_s": 0.5,
                   "min_rounds": 5, "max_rounds": 6},
        "settings": {"torch_num_threads": 2},
        "execution": {"dtype_mode": "fp32"},
    }
    assert (contention["threads"], contention["cpu_share"], contention["other_load_cores"]) == (2, 0.9, 0.125)
    bare = LatencyResult(ForwardCase(2, 32), hand_timing(None, None), cfg, {}, {})
    assert bare.provenance()["contention"] is None


# ---------------------------------------------------------------------------------------------------------------
# forward_latency on a model that costs nothing (the timing is the fake clock's; the code paths are real).


class Recorder(nn.Module):
    """Records the inputs it is called with."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        return x


def test_forward_latency_refuses_a_bare_module_naming_it() -> None:
    with pytest.raises(TypeError) as err:
        forward_latency(Recorder(), ForwardCase(1, 8), Timer(torch.device("cpu")))  # type: ignore[arg-type]
    assert str(err.value) == ("forward_latency takes a Prepared model (lvmharness.runtime.execution.Prepared), "
                              "got Recorder; "
                              "wrap it: Prepared(model, device, ExecOptions(dtype=...))")


def test_forward_latency_refuses_a_timer_of_another_device() -> None:
    prepared = Prepared(Recorder(), torch.device("cpu"), ExecOptions())
    with pytest.raises(ValueError, match=r"^the model is prepared for cpu but the timer times meta$"):
        forward_latency(prepared, ForwardCase(1, 8), Timer(torch.device("meta")))


def test_forward_latency_times_the_cases_seeded_batch_and_warms_up_per_shape() -> None:
    model = Recorder()
    prepared = Prepared(model, torch.device("cpu"), ExecOptions())
    cfg = TimingConfig(warmup_rounds=2, warmup_s=0, budget_s=0, min_rounds=3, max_rounds=3)
    timer = Timer(torch.device("cpu"), cfg, clock=SteppingClock(0.005))
    drove: list[int] = []

    def runner(fn: Any, n: int) -> None:
        drove.append(n)
        for _ in range(n):
            fn()

    case = ForwardCase(batch_size=2, img_size=8, seed=3)
    result = forward_latency(prepared, case, timer, runner=runner)
    assert drove == [3] and result.timing.warmup_rounds == 2
    expected_x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    assert len(model.inputs) == 2 + 3 and all(torch.equal(x, expected_x) for x in model.inputs)
    assert (result.case, result.config, result.compile_values) == (case, cfg, {})
    assert result.settings == settings(torch.device("cpu")) and result.execution == prepared.provenance()
    # Same shape again: already warm. Another batch size or image size: a new shape, warmed up again.
    assert forward_latency(prepared, case, timer).timing.warmup_rounds == 0
    assert forward_latency(prepared, ForwardCase(4, 8, seed=3), timer).timing.warmup_rounds == 2
    assert forward_latency(prepared, ForwardCase(2, 16, seed=3), timer).timing.warmup_rounds == 2


class Double(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def test_forward_latency_under_compile_records_the_compile() -> None:
    # Dynamo's eager backend: the compile path without a C compiler; the first call is the compile, timed apart.
    prepared = Prepared(Double(), torch.device("cpu"), ExecOptions(compile=True, compile_backend="eager"))
    timer = Timer(torch.device("cpu"), TimingConfig(warmup_rounds=1, warmup_s=0, min_rounds=2, max_rounds=2),
                  clock=SteppingClock(0.005))
    result = forward_latency(prepared, ForwardCase(2, 8), timer)
    assert result.compile_values["compile_graphs_this_shape"] == 1  # one graph for the one shape
    assert result.compile_values["compile_first_call_ms"] > 0
    assert set(result.compile_values) <= set(result.values())


# ---------------------------------------------------------------------------------------------------------------
# Fidelity


def test_fidelity_values_and_provenance_of_known_timings() -> None:
    c = hand_contention()
    ours = TimingResult([1.0, 2.0, 3.0], None, 0, 0.0, Stats.of([1.0, 2.0, 3.0]), None, c)
    # Bare loop 1, 2, 3, 10: median between 2 and 3 = 2.5 (p51 would be 2.53).
    result = FidelityResult(ours, torch_timer_ms_median=4.0, torch_timer_runs=7, bare_loop_ms=[1.0, 2.0, 3.0, 10.0])
    assert result.values() == {
        "latency_ms_p50": 2.0, "torch_timer_ms_median": 4.0, "bare_loop_ms_p50": 2.5,
        "ratio_ours_vs_torch_timer": 0.5, "ratio_ours_vs_bare_loop": 0.8, "rounds": 3.0, "torch_timer_runs": 7.0,
        "contended": False, "cpu_share": 0.9, "other_load_cores": 0.125,
    }
    prov = result.provenance()
    assert prov["reference_timers"] == [
        "torch.utils.benchmark.Timer.blocked_autorange (clock: ours, synchronized on the case's device)",
        "bare perf_counter loop, synchronized at its end",
    ]
    assert prov["contention"]["cpu_share"] == 0.9
    ours.contention = None
    assert "contended" not in result.values() and result.provenance()["contention"] is None


class FakeTime:
    """A perf_counter for the bare loop that shares the fake device's clock (it moves only when work runs)."""

    def __init__(self, dev: FakeDevice) -> None:
        self.dev = dev

    def perf_counter(self) -> float:
        return self.dev.t


@pytest.mark.parametrize("budget_s", [0.0, 0.5])
def test_fidelity_on_a_fake_clock(monkeypatch: pytest.MonkeyPatch, budget_s: float) -> None:
    """Every call of the work takes 2^-9 s on the fake clock, so all three timers must say 1.953125 ms.

    torch.utils.benchmark's blocked_autorange runs on our clock; whatever block size it picks, it times blocks
    until their total reaches its min_run_time, which fidelity sets to max(budget_s, 0.2 s): at least
    0.2 / 2^-9 = 102.4 calls, or 0.5 / 2^-9 = 256, and the median per call is the step exactly.
    """
    step = 2.0**-9
    dev = FakeDevice([step] * 1000)
    monkeypatch.setattr(lvmharness.measure.fidelity, "time", SimpleNamespace(perf_counter=FakeTime(dev).perf_counter))
    timer = make(TimingConfig(warmup_rounds=1, warmup_s=0, budget_s=budget_s, min_rounds=4, max_rounds=4), dev)
    drove: list[int] = []

    def runner(fn: Any, n: int) -> None:
        drove.append(n)
        for _ in range(n):
            fn()

    result = fidelity(dev.fn, timer, "f", runner=runner)
    # Our rounds are the timer's own measurement of key "f": warmed up once under that key, kept for later calls.
    assert result.ours.warmup_rounds == 1 and timer.is_warm("f")
    assert drove == [4] and result.ours.samples_ms == [step * 1e3] * 4
    # It stops at the first block that reaches min_run_time: past it by less than one block (blocks are short next
    # to min_run_time: 0.1 s here would be a block of 51 calls).
    assert result.torch_timer_ms_median == step * 1e3
    assert max(budget_s, 0.2) <= result.torch_timer_runs * step < max(budget_s, 0.2) + 0.1
    assert result.bare_loop_ms == [step * 1e3] * 4
    values = result.values()
    assert values["ratio_ours_vs_torch_timer"] == 1.0 and values["ratio_ours_vs_bare_loop"] == 1.0
