"""Devices and dtypes: resolve ``auto|cpu|cuda|cuda:N|mps``, synchronize, describe the hardware."""

from __future__ import annotations

import contextlib
import os
import platform
import re
from collections.abc import Callable
from typing import Any

import torch

from lvmharness.core import procfs
from lvmharness.core.errors import BadValueError, UserError
from lvmharness.core.vocab import STORAGE_DTYPE_NAMES

VALID_DEVICES = "auto, cpu, cuda, cuda:N, mps"

# Storage dtypes by name (bytes per element for memory figures); execution modes, AMP included, live in
# lvmharness.runtime.execution.
DTYPES: dict[str, torch.dtype] = dict(zip(STORAGE_DTYPE_NAMES, (torch.float32, torch.bfloat16, torch.float16),
                                          strict=True))


class DeviceUnavailableError(UserError, RuntimeError):
    """The device was named correctly but this machine does not have it."""


def resolve_device(spec: str, option: str = "--device") -> torch.device:
    """Turn a user's device string into a torch.device that exists here, or raise with what is valid.

    ``option`` is how the front end the user is in spells the device option, for the hint in the error."""
    text = spec.strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", text)
    if m:
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {spec!r} requested but CUDA is not available here "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); use {option} cpu"
            )
        index = int(m.group(1) or 0)
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceUnavailableError(
                f"device {spec!r} requested but only {count} CUDA device(s) exist: cuda:0..cuda:{count - 1}"
            )
        return torch.device("cuda", index)
    if text == "mps":
        if not _mps_available():
            raise DeviceUnavailableError(f"device {spec!r} requested but MPS is not available on this machine")
        return torch.device("mps")
    raise BadValueError(f"unknown device {spec!r}: valid devices are {VALID_DEVICES}")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A no-argument function that waits for all queued work on ``device`` (a no-op on CPU); on CUDA it names the
    device, so it waits for ``cuda:N`` whatever the current device is."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return lambda: torch.cuda.synchronize(index)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def on_device(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Make ``device`` the current CUDA device inside the block (a no-op elsewhere).

    torch calls without a device argument — ``Event.record()`` (the current stream), ``torch.cuda.synchronize()``,
    ``torch.accelerator.synchronize()`` inside ``torch.utils.benchmark``, ``is_bf16_supported()`` — act on the
    *current* device, which is ``cuda:0`` unless set, not necessarily the case's ``cuda:N``.
    """
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def cpu_model() -> str:
    return procfs.cpuinfo_value("model name") or platform.processor() or platform.machine()


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    return cpu_model()
