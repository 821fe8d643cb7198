from __future__ import annotations

import pytest
import torch

from lvmharness.devices import DeviceUnavailableError, resolve_device, synchronizer
from lvmharness.execution import check_dtype_mode


def test_cpu_and_auto_resolve() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else auto.type)
    assert resolve_device(" CPU ").type == "cpu"


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
