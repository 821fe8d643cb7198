"""What the process got while it was being timed: a busy machine is a fact to record, not noise to hide.

A round timed while other processes share the cores is stretched, and can be stretched *steadily*: a stable
8x-too-slow latency has a small IQR and passes every variance check. So each timed window records, from the
kernel's own accounting:

* ``cpu_share`` — process CPU seconds ÷ (wall seconds × torch threads): 1.0 when every torch thread ran all the
  time. Informative, not decisive on its own: an idle run of a model with serial stretches (Python overhead,
  single-threaded ops) is below 1 too.
* ``other_load_cores`` — mean number of cores, among those this process may run on, busy with anything but this
  process and its descendants: busy time from ``/proc/stat`` (user, nice, system, irq, softirq and steal — steal is
  CPU time the hypervisor gave to another guest) minus the CPU time of this process and of the processes it started
  (a DataLoader's workers are part of the measured job, not a competitor), over the window. ``/proc/stat`` counts in
  clock ticks (``USER_HZ``, 100/s), so the figure carries ``resolution_cores`` = one tick per core ÷ wall.
* ``run_wait_share`` — time this process's threads spent runnable but waiting for a CPU (the second field of
  ``/proc/<pid>/task/<tid>/schedstat``, nanoseconds, kernel ``Documentation/scheduler/sched-stats.rst``) ÷ (wall ×
  torch threads): the direct measure of CPU time others took from us, at nanosecond resolution.
* on CUDA, through NVML where installed (``nvidia-ml-py``): other processes on the case's GPU and the clock
  throttle reasons during the window.

The verdict (``contended``) and its thresholds are in :func:`judge`; the reasons are recorded with the numbers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from lvmharness.core import procfs

# --- thresholds (see judge()) -------------------------------------------------------------------------------------
# Cores of other load tolerated beyond the cores our threads leave free. An idle Linux machine's background
# (kernel threads, journald, an ssh session) is a few hundredths of a core; a quarter core is well above that and
# well below one competing process. A competitor holding a quarter of the time on one of our cores stretches each
# parallel region running there by up to 25% (a region ends when its slowest thread does).
OTHER_LOAD_TOLERANCE_CORES = 0.25
# Share of our threads' time spent runnable but not running. On an idle machine this is wake-up latency only
# (microseconds per wake; OpenMP workers spin between parallel regions rather than sleep), far below 1%. A thread
# that waits 10% of the time runs at most 90%: the latency is at least ~11% too long, the size of the 10% IQR/median
# noise rule — past it the number is not the model's.
RUN_WAIT_LIMIT = 0.10
# NVML clock-throttle reasons that mean the GPU ran slower than it could for reasons outside the case (power brake,
# thermal, hardware slowdown). Bit values from nvml.h (nvmlClocksEventReason*): SwPowerCap 0x4, HwSlowdown 0x8,
# SwThermalSlowdown 0x20, HwThermalSlowdown 0x40, HwPowerBrakeSlowdown 0x80.
GPU_SLOWDOWN_REASONS = {0x4: "sw_power_cap", 0x8: "hw_slowdown", 0x20: "sw_thermal", 0x40: "hw_thermal",
                        0x80: "hw_power_brake"}
GPU_OTHER_REASONS = {0x1: "gpu_idle", 0x2: "applications_clocks", 0x10: "sync_boost", 0x100: "display_clocks"}


def affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return list(range(os.cpu_count() or 1))


def descendants_cpu_s() -> float:
    """CPU seconds of every process this one started: live ones (psutil) plus those already waited for.

    A worker that ends inside a window moves from the first term to the second (``os.times()`` counts children
    once they are reaped), so the sum grows monotonically and a window's difference is what the workers used in it.
    """
    import psutil

    total = 0.0
    try:
        for child in psutil.Process().children(recursive=True):
            with_times = child.cpu_times()
            total += with_times.user + with_times.system
    except psutil.Error:  # a child that ended between listing and reading: it is counted once reaped
        pass
    t = os.times()
    return total + t.children_user + t.children_system


@dataclass(frozen=True)
class Snapshot:
    wall_s: float
    process_cpu_s: float
    stat: tuple[float, float] | None  # (busy s, steal s) over our cores, from /proc/stat
    run_wait_s: float | None
    descendants_cpu_s: float = 0.0  # CPU s of processes we started (DataLoader workers): ours, not other load


def snapshot(cpus: list[int]) -> Snapshot:
    return Snapshot(time.perf_counter(), time.process_time(), procfs.stat_busy_s(cpus), procfs.run_wait_s(),
                    descendants_cpu_s())


@dataclass
class Contention:
    """What the process got over one timed window, and the verdict."""

    wall_s: float
    threads: int
    cores: int  # cores this process may run on (its affinity mask)
    cpu_share: float
    other_load_cores: float | None
    resolution_cores: float | None
    steal_cores: float | None
    run_wait_share: float | None
    gpu: dict[str, Any] | None = None
    contended: bool = False
    reasons: list[str] = field(default_factory=list)

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {"contended": self.contended, "cpu_share": self.cpu_share}
        if self.other_load_cores is not None:
            out["other_load_cores"] = self.other_load_cores
        return out

    def provenance(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "source": "/proc/stat (cores in the affinity mask), /proc/self/task/*/schedstat, time.process_time"
            + (", NVML" if self.gpu and self.gpu.get("nvml") else ""),
            "thresholds": {"other_load_tolerance_cores": OTHER_LOAD_TOLERANCE_CORES,
                           "run_wait_limit": RUN_WAIT_LIMIT},
        }


def judge(c: Contention) -> Contention:
    """Set ``contended`` and its reasons.

    Contended when any of:

    * others kept more cores busy than our threads leave free (``cores - threads``), by more than
      :data:`OTHER_LOAD_TOLERANCE_CORES` plus the measurement's tick resolution;
    * our threads waited for a CPU more than :data:`RUN_WAIT_LIMIT` of the time;
    * on CUDA, another process held the GPU, or NVML reported a power/thermal slowdown.
    """
    reasons: list[str] = []
    spare = max(0, c.cores - c.threads)
    if c.other_load_cores is not None:
        limit = spare + OTHER_LOAD_TOLERANCE_CORES + (c.resolution_cores or 0.0)
        if c.other_load_cores > limit:
            reasons.append(f"other processes kept {c.other_load_cores:.2f} cores busy (more than the {spare} our "
                           f"{c.threads} threads leave free + {limit - spare:.2f} tolerance)")
    if c.run_wait_share is not None and c.run_wait_share > RUN_WAIT_LIMIT:
        reasons.append(f"our threads waited for a CPU {c.run_wait_share:.0%} of the time (limit {RUN_WAIT_LIMIT:.0%})")
    if c.gpu:
        others = c.gpu.get("other_processes") or []
        if others:
            reasons.append(f"{len(others)} other process(es) on the GPU: pids {[p['pid'] for p in others]}")
        slow = c.gpu.get("slowdown_reasons") or []
        if slow:
            reasons.append(f"GPU clocks throttled: {', '.join(slow)}")
    c.reasons = reasons
    c.contended = bool(reasons)
    return c


def measure_window(start: Snapshot, end: Snapshot, *, threads: int, cores: int,
                   gpu: dict[str, Any] | None = None) -> Contention:
    """Contention over the window between two snapshots."""
    wall = max(end.wall_s - start.wall_s, 1e-9)
    ours = end.process_cpu_s - start.process_cpu_s
    workers = max(0.0, end.descendants_cpu_s - start.descendants_cpu_s)
    other = resolution = steal = None
    if start.stat is not None and end.stat is not None:
        busy = end.stat[0] - start.stat[0]
        other = max(0.0, (busy - ours - workers) / wall)
        steal = (end.stat[1] - start.stat[1]) / wall
        resolution = cores / procfs.USER_HZ / wall  # one tick per core at each end, at worst
    wait = None
    if start.run_wait_s is not None and end.run_wait_s is not None:
        wait = max(0.0, end.run_wait_s - start.run_wait_s) / (wall * threads)
    return judge(Contention(
        wall_s=wall, threads=threads, cores=cores, cpu_share=ours / (wall * threads), other_load_cores=other,
        resolution_cores=resolution, steal_cores=steal, run_wait_share=wait, gpu=gpu,
    ))


class GpuWatch:
    """Other processes and throttle reasons of one CUDA device through NVML (``pynvml``), where installed."""

    def __init__(self, device: Any) -> None:
        self.handle: Any = None
        self.error: str | None = None
        self.reasons_seen = 0
        self.device = device
        try:
            import pynvml  # type: ignore[import-not-found]  # optional: nvidia-ml-py
            import torch

            pynvml.nvmlInit()
            uuid = str(torch.cuda.get_device_properties(device).uuid)
            self.handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
            self._nvml = pynvml
        except Exception as exc:  # no pynvml, no driver, no permission: record why
            self.error = f"{type(exc).__name__}: {exc}"

    def _reasons(self) -> int:
        nv = self._nvml
        fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or nv.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(fn(self.handle))

    def sample(self) -> None:
        """OR the current throttle reasons into what the window saw (called at its start and end)."""
        if self.handle is not None:
            try:
                self.reasons_seen |= self._reasons()
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"

    def report(self) -> dict[str, Any]:
        if self.handle is None:
            return {"nvml": False, "error": self.error or "pynvml not installed (pip install nvidia-ml-py)"}
        nv = self._nvml
        listed: list[dict[str, Any]] = []
        try:
            for getter in (nv.nvmlDeviceGetComputeRunningProcesses, nv.nvmlDeviceGetGraphicsRunningProcesses):
                for p in getter(self.handle):
                    listed.append({"pid": int(p.pid), "used_memory_bytes": p.usedGpuMemory})
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        procs, note = others_than_me(listed, os.getpid(), self._own_reserved())
        bits = self.reasons_seen
        return {
            "nvml": True,
            "other_processes": procs,
            **({"pid_note": note} if note else {}),
            "throttle_reasons_mask": bits,
            "slowdown_reasons": [name for bit, name in GPU_SLOWDOWN_REASONS.items() if bits & bit],
            "other_reasons": [name for bit, name in GPU_OTHER_REASONS.items() if bits & bit],
            "error": self.error,
        }


    def _own_reserved(self) -> int | None:
        try:
            import torch

            return int(torch.cuda.memory_reserved(self.device)) if torch.cuda.is_initialized() else None
        except Exception:
            return None


def others_than_me(listed: list[dict[str, Any]], me: int, own_reserved: int | None,
                   ) -> tuple[list[dict[str, Any]], str | None]:
    """The processes NVML lists on the device, less this one. NVML reports PIDs of the host's PID namespace; in a
    container ``os.getpid()`` is another number, and this process (which holds a context on the device while it
    times) would count as "another process" and flag every record. When ``me`` is not listed but this process has
    initialised CUDA (``own_reserved`` not None), one entry is this process under its host PID: the one whose used
    memory is closest to what this process's allocator reserves (the rest is its CUDA context) is dropped, and
    the note says so."""
    if any(p["pid"] == me for p in listed):
        return [p for p in listed if p["pid"] != me], None
    if not listed or own_reserved is None:
        return listed, None
    mine = min(listed, key=lambda p: abs(int(p["used_memory_bytes"] or 0) - own_reserved))
    note = (f"this process (pid {me}) is not listed under its own pid: a PID namespace (container), NVML reports "
            f"host PIDs; pid {mine['pid']}, whose used memory is closest to this process's reserved "
            f"{own_reserved} bytes, was taken as this process")
    return [p for p in listed if p is not mine], note


class Window:
    """Brackets one timed window: ``with Window(device, threads) as w: ...`` then ``w.result``."""

    def __init__(self, device: Any, threads: int, *, clock: Callable[[], Snapshot] | None = None) -> None:
        self.cpus = affinity()
        self.threads = max(1, threads)
        self._snap = clock or (lambda: snapshot(self.cpus))
        self._gpu = GpuWatch(device) if getattr(device, "type", None) == "cuda" else None
        self.result: Contention | None = None
        self._start: Snapshot | None = None

    def __enter__(self) -> Window:
        if self._gpu is not None:
            self._gpu.sample()
        self._start = self._snap()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._snap()
        assert self._start is not None
        gpu = None
        if self._gpu is not None:
            self._gpu.sample()
            gpu = self._gpu.report()
        self.result = measure_window(self._start, end, threads=self.threads, cores=len(self.cpus), gpu=gpu)


def machine_load(threads: int, seconds: float = 0.5) -> Contention:
    """Other processes' load on our cores over ``seconds`` while this process sleeps: the run-level check that the
    machine is already busy before anything is measured. ``threads`` is what the cases will use
    (``torch.get_num_threads()``); only the load judgement applies (a sleeping process waits for no CPU)."""
    cpus = affinity()
    start = snapshot(cpus)
    time.sleep(seconds)
    end = snapshot(cpus)
    c = measure_window(start, end, threads=max(1, threads), cores=len(cpus))
    c.cpu_share = 0.0  # meaningless for a sleeping process
    return c
