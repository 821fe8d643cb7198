"""Timer fidelity: the same callable timed by our core, by ``torch.utils.benchmark.Timer`` and by a bare loop.

Ratios near 1.0 say our synchronization and bookkeeping add no measurable overhead; ratios far from 1.0 say one of
the three is measuring something else.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from torch.utils.benchmark import Timer as TorchTimer

from lvmharness.core.stats import percentile
from lvmharness.measure.latency import RoundFn, Runner, Timer, TimingResult
from lvmharness.runtime.devices import on_device


@dataclass
class FidelityResult:
    """The same callable timed three ways; ratios near 1.0 say our bookkeeping adds nothing measurable."""

    ours: TimingResult
    torch_timer_ms_median: float
    torch_timer_runs: int
    bare_loop_ms: list[float]

    def values(self) -> dict[str, Any]:
        ours_ms = self.ours.stats.p50
        bare_ms = percentile(self.bare_loop_ms, 50)
        out: dict[str, Any] = {
            "latency_ms_p50": ours_ms,
            "torch_timer_ms_median": self.torch_timer_ms_median,
            "bare_loop_ms_p50": bare_ms,
            "ratio_ours_vs_torch_timer": ours_ms / self.torch_timer_ms_median,
            "ratio_ours_vs_bare_loop": ours_ms / bare_ms,
            "rounds": float(self.ours.rounds),
            "torch_timer_runs": float(self.torch_timer_runs),
        }
        if self.ours.contention is not None:
            out.update(self.ours.contention.values())
        return out

    def provenance(self) -> dict[str, Any]:
        return {
            "reference_timers": ["torch.utils.benchmark.Timer.blocked_autorange (clock: ours, synchronized on the "
                                 "case's device)", "bare perf_counter loop, synchronized at its end"],
            "contention": self.ours.contention.provenance() if self.ours.contention is not None else None,
        }


def fidelity(fn: RoundFn, timer: Timer, key: Hashable, *, runner: Runner | None = None) -> FidelityResult:
    """Time ``fn`` with our core, with ``torch.utils.benchmark.Timer`` and with a bare perf_counter loop.

    Ratios near 1.0 say our synchronization and bookkeeping add no measurable overhead; ratios far from 1.0 say
    one of the three is measuring something else. torch's Timer synchronizes ``torch.accelerator`` — the
    *current* device — so it gets our synchronized clock instead, which waits for the case's device.
    """
    ours = timer.measure(fn, key, runner=runner)
    budget = max(timer.config.budget_s, 0.2)
    with on_device(timer.device):
        theirs = TorchTimer(stmt="fn()", globals={"fn": fn}, timer=timer.now).blocked_autorange(min_run_time=budget)
        bare: list[float] = []
        for _ in range(ours.rounds):
            t0 = time.perf_counter()
            fn()
            timer.now()
            bare.append((time.perf_counter() - t0) * 1e3)
    return FidelityResult(ours, theirs.median * 1e3, theirs.number_per_run * len(theirs.raw_times), bare)
