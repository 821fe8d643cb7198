from __future__ import annotations

import pytest
import torch

from lvmharness.runtime.devices import DeviceUnavailableError, resolve_device, synchronizer
from lvmharness.runtime.execution import auto_amp_dtype, autocast, check_dtype_mode, native_bf16


def test_cpu_and_auto_resolve() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    # auto prefers CUDA, then MPS, then the CPU.
    mps = getattr(torch.backends, "mps", None)
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps is not None and mps.is_available() else "cpu"
    auto = resolve_device("auto")
    assert auto.type == expected
    if expected == "cuda":
        assert auto.index == torch.cuda.current_device()
    assert resolve_device(" CPU ").type == "cpu"


def test_autocast_without_a_dtype_switches_an_outer_autocast_off() -> None:
    cpu = torch.device("cpu")
    lin = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lin(x).dtype == torch.bfloat16
        with autocast(cpu, None):
            assert lin(x).dtype == torch.float32
        with autocast(cpu, torch.bfloat16):
            assert lin(x).dtype == torch.bfloat16


def test_the_automatic_amp_dtype_on_cpu_is_bf16() -> None:
    # CPUs run bf16 natively (AVX-512 BF16 / AMX where present, else converted per op); fp16 AMP is not offered.
    assert native_bf16(torch.device("cpu")) and auto_amp_dtype(torch.device("cpu")) == torch.bfloat16


@pytest.mark.cuda
def test_the_automatic_amp_dtype_on_cuda_follows_the_gpus_capability() -> None:
    # Native bf16 starts with compute capability 8.0 (Ampere); below it bf16 is emulated, and AMP must use fp16.
    for i in range(torch.cuda.device_count()):
        dev = torch.device("cuda", i)
        native = torch.cuda.get_device_capability(i)[0] >= 8
        assert native_bf16(dev) is native
        assert auto_amp_dtype(dev) == (torch.bfloat16 if native else torch.float16)


@pytest.mark.parametrize("bad", ["tpu", "gpu", "cuda:x", "cuda0", ""])
def test_unknown_device_lists_valid_ones(bad: str) -> None:
    with pytest.raises(ValueError, match=r"valid devices are auto, cpu, cuda, cuda:N, mps"):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_missing_cuda_is_a_clear_error() -> None:
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
        resolve_device("cuda:1")


@pytest.mark.cuda
def test_cuda_index_out_of_range() -> None:
    with pytest.raises(DeviceUnavailableError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_env_records_which_gpus_cuda_n_can_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from lvmharness.runtime import envinfo

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert envinfo.collect()["cuda_visible_devices"] == "3,1"  # cuda:0 is physical GPU 3 in this run
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert envinfo.collect()["cuda_visible_devices"] is None


def test_dtypes() -> None:
    cpu = torch.device("cpu")
    assert check_dtype_mode("bf16", cpu) == (torch.bfloat16, None)
    assert check_dtype_mode("amp_bf16", cpu) == (torch.float32, torch.bfloat16)
    with pytest.raises(DeviceUnavailableError, match="fp16 is not measured on cpu"):
        check_dtype_mode("fp16", cpu)
    with pytest.raises(ValueError, match="valid dtypes are fp32, bf16, fp16, amp_bf16, amp_fp16"):
        check_dtype_mode("int8", cpu)


def test_cpu_synchronizer_is_a_callable_noop() -> None:
    assert synchronizer(torch.device("cpu"))() is None
