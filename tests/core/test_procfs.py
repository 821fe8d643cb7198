"""The kernel's pseudo-files, read from fake copies whose expected values are worked out by hand from proc(5)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lvmharness.core import procfs
from lvmharness.core.procfs import USER_HZ as HZ

STATUS = "Name:\tpython\nUmask:\t0027\nVmPeak:\t  900 kB\nVmHWM:\t  512 kB\nVmRSS:\t  256 kB\nVmData:\t 1024 kB\n"
CPUINFO = ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Test CPU @ 2.00GHz\n"
           "flags\t\t: fpu sse2 avx2 fma\n\nprocessor\t: 1\nmodel name\t: Other CPU\nflags\t\t: fpu\n")


def test_status_fields_are_kilobytes_and_the_umask_is_text(tmp_path: Path) -> None:
    path = tmp_path / "status"
    path.write_text(STATUS)
    assert procfs.status_bytes("VmRSS", str(path)) == 256 * 1024
    assert procfs.status_bytes("VmHWM", str(path)) == 512 * 1024
    assert procfs.status_value("Umask", str(path)) == "0027"
    assert procfs.status_bytes("VmSwap", str(path)) is None  # absent field
    assert procfs.status_bytes("VmRSS", str(tmp_path / "missing")) is None  # no /proc


def test_cpuinfo_is_read_from_the_first_processor(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    assert procfs.cpuinfo_value("model name", str(path)) == "Test CPU @ 2.00GHz"
    assert procfs.cpu_flags(str(path)) == {"fpu", "sse2", "avx2", "fma"}
    assert procfs.cpu_flags(str(tmp_path / "missing")) == set()


def test_the_cpufreq_maximum_is_kilohertz(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo_max_freq"
    path.write_text("3500000\n")
    assert procfs.cpu_max_freq_hz(str(path)) == 3.5e9
    path.write_text("n/a\n")
    assert procfs.cpu_max_freq_hz(str(path)) is None


def test_the_nvidia_driver_version_line(tmp_path: Path) -> None:
    path = tmp_path / "version"
    path.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.15  Release Build  (dvs)\n"
                    "GCC version:  gcc version 12.3.0\n")
    assert procfs.nvidia_driver_version(str(path)) == "550.54.15"
    assert procfs.nvidia_driver_version(str(tmp_path / "missing")) is None


def test_proc_stat_fields_are_summed_over_our_cores_only(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    # proc(5): user nice system idle iowait irq softirq steal guest guest_nice (ticks)
    stat.write_text(
        "cpu  900 900 900 900 900 900 900 900 0 0\n"
        "cpu0 100 10 50 1000 7 1 2 3 40 0\n"
        "cpu1 200 20 60 2000 9 4 5 6 0 0\n"
        "cpu2 999 999 999 999 999 999 999 999 0 0\n"
        "intr 12345\n"
    )
    busy, steal = procfs.stat_busy_s([0, 1], str(stat)) or (0.0, 0.0)
    # cpu0: 100+10+50+1+2+3 = 166; cpu1: 200+20+60+4+5+6 = 295 (idle, iowait out; guest already inside user)
    assert busy == pytest.approx((166 + 295) / HZ)
    assert steal == pytest.approx((3 + 6) / HZ)
    assert procfs.stat_busy_s([7], str(stat)) is None


def test_run_wait_is_the_second_schedstat_field_summed_over_threads(tmp_path: Path) -> None:
    for tid, line in (("11", "5000 2000000 3"), ("12", "7000 500000000 9")):
        (tmp_path / tid).mkdir()
        (tmp_path / tid / "schedstat").write_text(line + "\n")
    assert procfs.run_wait_s(str(tmp_path)) == pytest.approx(0.502)


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux >= 4.0")
def test_resetting_the_peak_rss_brings_vmhwm_down_to_vmrss() -> None:
    buf = bytearray(64 * 2**20)  # 64 MiB touched, then freed: VmHWM keeps it until reset
    buf[:: 4096] = b"\x01" * len(buf[:: 4096])
    del buf
    assert procfs.reset_peak_rss()
    hwm, rss = procfs.status_bytes("VmHWM"), procfs.status_bytes("VmRSS")
    assert hwm is not None and rss is not None
    assert hwm - rss < 32 * 2**20  # the 64 MiB transient is gone from the high-water mark
