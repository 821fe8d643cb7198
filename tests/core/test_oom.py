"""Out-of-memory classification, and that the core modules of the child protocol load without torch."""

from __future__ import annotations

import subprocess
import sys

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


def test_the_child_protocol_and_the_oom_check_import_no_torch() -> None:
    code = ("import sys\nimport lvmharness.core.child, lvmharness.core.oom, lvmharness.core.procfs\n"
            "from lvmharness.core.oom import is_oom\n"
            "assert is_oom(MemoryError()) and not is_oom(RuntimeError('shape mismatch'))\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
