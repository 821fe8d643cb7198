"""lvmharness: measure what large vision models cost — time, FLOPs, memory — honestly.

The Python API (``from lvmharness import measure_latency, count_flops, measure_memory, load_results``) and
``register_model`` are loaded on first use, so ``import lvmharness`` stays free of torch and timm.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it (imported when the name is first used).
_LAZY = {
    "register_model": "lvmharness.models.aliases",
    "measure_latency": "lvmharness.api",
    "count_flops": "lvmharness.api",
    "measure_memory": "lvmharness.api",
    "load_results": "lvmharness.api",
}

if TYPE_CHECKING:
    from lvmharness.api import count_flops, load_results, measure_latency, measure_memory
    from lvmharness.models.aliases import register_model

__all__ = ["__version__", "count_flops", "load_results", "measure_latency", "measure_memory", "register_model"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lvmharness' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
