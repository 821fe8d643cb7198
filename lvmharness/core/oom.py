"""Whether an exception is an out-of-memory: a result to record, not a crash. Standard library only.

torch is looked up in ``sys.modules``, never imported: an exception of a torch class can only have been raised
when torch is loaded, so a process that never imported torch (``lvm compare``) pays nothing for the check.
"""

from __future__ import annotations

import sys

# Library allocation failures on CUDA that torch raises as a plain RuntimeError, not torch.OutOfMemoryError: a cuBLAS
# handle or workspace (CUBLAS_STATUS_ALLOC_FAILED, from cublasCreate / cublasLt workspace), cuDNN's
# (CUDNN_STATUS_ALLOC_FAILED, CUDNN_STATUS_NOT_ENOUGH_WORKSPACE), cuFFT's and cuSOLVER's; raised when the caching
# allocator has left the library no room (torch/csrc/cuda/CUDABlas.cpp, aten/src/ATen/cudnn/Exceptions.h).
_LIBRARY_OOM = ("cublas_status_alloc_failed", "cudnn_status_alloc_failed", "cudnn_status_not_enough_workspace",
                "cufft_alloc_failed", "cusolver_status_alloc_failed")


def is_oom(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    oom_types: tuple[type[BaseException], ...] = (MemoryError,)
    if torch is not None:
        oom_types += (torch.OutOfMemoryError,)
    if isinstance(exc, oom_types):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                              or any(m in text for m in _LIBRARY_OOM))
