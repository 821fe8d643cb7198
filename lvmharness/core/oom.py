"""Is an exception an out-of-memory? Torch-free: the store and the child protocol classify failures without
importing torch (an exception raised by torch means torch is already in ``sys.modules``)."""

from __future__ import annotations

import sys

# Library allocation failures on CUDA that torch raises as a plain RuntimeError, not torch.OutOfMemoryError: a cuBLAS
# handle or workspace (CUBLAS_STATUS_ALLOC_FAILED, from cublasCreate / cublasLt workspace), cuDNN's
# (CUDNN_STATUS_ALLOC_FAILED, CUDNN_STATUS_NOT_ENOUGH_WORKSPACE), cuFFT's and cuSOLVER's; raised when the caching
# allocator has left the library no room (torch/csrc/cuda/CUDABlas.cpp, aten/src/ATen/cudnn/Exceptions.h).
_LIBRARY_OOM = ("cublas_status_alloc_failed", "cudnn_status_alloc_failed", "cudnn_status_not_enough_workspace",
                "cufft_alloc_failed", "cusolver_status_alloc_failed")


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                              or any(m in text for m in _LIBRARY_OOM))
