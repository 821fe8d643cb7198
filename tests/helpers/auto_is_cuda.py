"""A pytest plugin that makes ``auto`` mean CUDA, as on a machine with a GPU, so that a machine without one shows
which tests assume that ``--lvm-device auto`` is the CPU (there, CUDA cases skip; a test expecting CPU records
fails). It reaches the nested ``pytest benches/`` runs of the tests through the inherited environment:

    PYTHONPATH=tests/helpers PYTEST_PLUGINS=auto_is_cuda python -m pytest tests/bench/test_bench_smoke.py

Not collected (no ``test_`` prefix); nothing imports it unless asked to.
"""

from __future__ import annotations

import torch

import lvmharness.runtime.devices as devices

_resolve = devices.resolve_device


def _auto_is_cuda(spec: str, option: str = "--device") -> torch.device:
    return _resolve("cuda" if spec.strip().lower() == "auto" else spec, option)


devices.resolve_device = _auto_is_cuda
