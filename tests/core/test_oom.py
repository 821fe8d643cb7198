"""What counts as an out-of-memory: a result to record, not a crash."""

from __future__ import annotations

import pytest
import torch

from lvmharness.core.oom import is_oom


@pytest.mark.parametrize(
    ("exc", "oom"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (MemoryError(), True),
        (RuntimeError("CUDA error: out of memory"), True),
        # The CPU allocator's words (no "out of memory" in them):
        (RuntimeError("[enforce fail at alloc_cpu.cpp:114] data. DefaultCPUAllocator: can't allocate memory: "
                      "you tried to allocate 8589934592 bytes. Error code 12 (Cannot allocate memory)"), True),
        (RuntimeError("Expected all tensors to be on the same device"), False),
        (ValueError("out of memory"), False),  # only a RuntimeError can be torch's allocator failing
    ],
)
def test_is_oom_recognises_the_allocators_messages(exc: BaseException, oom: bool) -> None:
    assert is_oom(exc) is oom
