"""The Linux kernel's pseudo-files (/proc, /sys), read in one place; every reader returns None off Linux.

What is read, and its units (proc(5) unless said otherwise):

* ``/proc/self/status``: ``VmRSS``, ``VmHWM``, ``VmData`` in kB (1024 bytes), ``Umask`` in octal;
* ``/proc/self/clear_refs``: writing ``5`` resets VmHWM to the current RSS (Linux >= 4.0);
* ``/proc/cpuinfo``: ``model name`` and ``flags`` of the first processor;
* ``/proc/stat``: per-CPU time in clock ticks (``USER_HZ``);
* ``/proc/self/task/<tid>/schedstat``: per-thread nanoseconds on the CPU, waiting on a run queue, and time slices
  (kernel ``Documentation/scheduler/sched-stats.rst``);
* ``/proc/driver/nvidia/version``: the NVIDIA kernel module's version line;
* ``/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq``: the cpufreq maximum in kHz.

Standard library only: the store and the machine description read these without importing torch.
"""

from __future__ import annotations

import os
import re

# /proc/stat counts in USER_HZ ticks; sysconf gives the value (100 on every Linux architecture in practice).
try:
    USER_HZ = os.sysconf("SC_CLK_TCK")
except (AttributeError, ValueError, OSError):  # not POSIX
    USER_HZ = 100

STATUS = "/proc/self/status"
CPUINFO = "/proc/cpuinfo"
STAT = "/proc/stat"
TASKS = "/proc/self/task"
CPU_MAX_FREQ = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"
NVIDIA_VERSION = "/proc/driver/nvidia/version"


def _field(path: str, key: str, encoding: str) -> str | None:
    """The text after ``key:`` on the first line of ``path`` that starts with ``key``; None if absent."""
    try:
        with open(path, encoding=encoding) as fh:
            for line in fh:
                if line.startswith(key):
                    head, sep, value = line.partition(":")
                    if sep and head.strip() == key:
                        return value.strip()
    except OSError:
        return None
    return None


def status_value(key: str, path: str = STATUS) -> str | None:
    """A field of /proc/self/status as its text (``"0022"`` for Umask, ``"1234 kB"`` for VmRSS)."""
    return _field(path, key, "ascii")


def status_bytes(key: str, path: str = STATUS) -> int | None:
    """A /proc/self/status memory field (VmRSS, VmHWM, VmData: kB) in bytes, or None off Linux."""
    value = status_value(key, path)
    return int(value.split()[0]) * 1024 if value else None


def reset_peak_rss(path: str = "/proc/self/clear_refs") -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: writing 5 to clear_refs); whether it could be done."""
    try:
        with open(path, "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def cpuinfo_value(key: str, path: str = CPUINFO) -> str | None:
    """A field of the first processor in /proc/cpuinfo (``model name``, ``flags``)."""
    return _field(path, key, "utf-8")


def cpu_flags(path: str = CPUINFO) -> set[str]:
    """The instruction-set flags of /proc/cpuinfo (``avx2``, ``fma``, ``avx512f``...); empty where unreadable."""
    value = cpuinfo_value("flags", path)
    return set(value.split()) if value else set()


def cpu_max_freq_hz(path: str = CPU_MAX_FREQ) -> float | None:
    """The cpufreq maximum (turbo included) in Hz; None without cpufreq (most VMs)."""
    try:
        with open(path, encoding="ascii") as fh:
            return int(fh.read().strip()) * 1e3  # kHz
    except (OSError, ValueError):
        return None


def stat_busy_s(cpus: list[int], path: str = STAT) -> tuple[float, float] | None:
    """(busy seconds, steal seconds) summed over ``cpus`` since boot, or None where /proc/stat is absent.

    Fields of a ``cpuN`` line (proc(5)): user nice system idle iowait irq softirq steal guest guest_nice; guest time
    is already inside user/nice, so it is not added again.
    """
    wanted = {f"cpu{i}" for i in cpus}
    busy = steal = 0
    found = 0
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                parts = line.split()
                if not parts or parts[0] not in wanted:
                    continue
                f = [int(v) for v in parts[1:9]]
                f += [0] * (8 - len(f))  # old kernels have fewer fields (steal since 2.6.11)
                user, nice, system, _idle, _iowait, irq, softirq, st = f
                busy += user + nice + system + irq + softirq + st
                steal += st
                found += 1
    except OSError:
        return None
    if found == 0:
        return None
    return busy / USER_HZ, steal / USER_HZ


def run_wait_s(task_dir: str = TASKS) -> float | None:
    """Seconds this process's live threads spent runnable-but-waiting since they started (schedstat field 2)."""
    total = 0
    try:
        tids = os.listdir(task_dir)
    except OSError:
        return None
    seen = 0
    for tid in tids:
        try:
            with open(f"{task_dir}/{tid}/schedstat", encoding="ascii") as fh:
                fields = fh.read().split()
            total += int(fields[1])
            seen += 1
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended between listdir and open
    return total / 1e9 if seen else None


def nvidia_driver_version(path: str = NVIDIA_VERSION) -> str | None:
    """The NVIDIA kernel module's version (``550.54.15``) from the driver's proc file; None without one."""
    try:
        with open(path, encoding="utf-8") as fh:
            m = re.search(r"Kernel Module(?: for [^ ]+)?\s+(\d+(?:\.\d+)+)", fh.read())
    except OSError:
        return None
    return m.group(1) if m else None
