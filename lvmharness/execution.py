"""Execution options that change a number: dtype / AMP, channels_last, torch.compile.

Each is explicit in the case id and the record. ``torch.compile``'s first call at a new input shape (the compile)
is timed and recorded apart from steady-state time, with the number of graphs compiled for that shape — never
hidden inside warm-up.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from lvmharness.devices import DeviceUnavailableError, synchronizer

# name -> (dtype of weights and inputs, autocast dtype or None)
DTYPE_MODES: dict[str, tuple[torch.dtype, torch.dtype | None]] = {
    "fp32": (torch.float32, None),
    "bf16": (torch.bfloat16, None),
    "fp16": (torch.float16, None),
    "amp_bf16": (torch.float32, torch.bfloat16),
    "amp_fp16": (torch.float32, torch.float16),
}


def check_dtype_mode(name: str, device: torch.device) -> tuple[torch.dtype, torch.dtype | None]:
    if name not in DTYPE_MODES:
        raise ValueError(f"unknown dtype {name!r}: valid dtypes are {', '.join(DTYPE_MODES)}")
    if device.type == "cpu" and name in ("fp16", "amp_fp16"):
        # CPU fp16 kernels are emulated for many ops: the number would describe the emulation, not the model.
        raise DeviceUnavailableError(f"dtype {name} is not measured on cpu (emulated kernels); use fp32 or bf16")
    return DTYPE_MODES[name]


@dataclass(frozen=True)
class ExecOptions:
    dtype: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    compile_backend: str = "inductor"

    def id_options(self) -> dict[str, Any]:
        """What goes into case ids and the record's ``options`` (dtype has its own field)."""
        out: dict[str, Any] = {}
        if self.channels_last:
            out["channels_last"] = True
        if self.compile:
            out["compile"] = True if self.compile_backend == "inductor" else self.compile_backend
        return out


@dataclass
class CompileStats:
    graphs_compiled: int = 0  # backend invocations: one per graph, recompiles and graph breaks included
    per_shape: dict[str, dict[str, float]] = field(default_factory=dict)


class Prepared:
    """A model made ready under some options; call :meth:`forward_fn` per input shape."""

    def __init__(self, model: torch.nn.Module, device: torch.device, options: ExecOptions) -> None:
        self.device = device
        self.options = options
        self.param_dtype, self.autocast_dtype = check_dtype_mode(options.dtype, device)
        model = model.to(device=device, dtype=self.param_dtype)
        if options.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.stats = CompileStats()
        self._sync = synchronizer(device)
        self.runner: Callable[[torch.Tensor], Any] = model
        if options.compile:
            from torch import _dynamo

            inner = _dynamo.lookup_backend(options.compile_backend)

            def counting_backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
                self.stats.graphs_compiled += 1
                return inner(gm, example_inputs)

            # dynamic=False: a new input shape is a recompile, which is exactly what we want to see and count.
            self.runner = torch.compile(model, backend=counting_backend, dynamic=False)

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        with torch.inference_mode():
            if self.autocast_dtype is not None:
                with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype):
                    yield
            else:
                yield

    def make_input(self, batch: int, img_size: int, seed: int = 0) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, 3, img_size, img_size, generator=gen).to(self.device, self.param_dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.options.channels_last else x

    def forward_fn(self, x: torch.Tensor) -> Callable[[], None]:
        """One inference forward on ``x``. Under compile the first call at this shape is timed here, apart."""
        def run() -> None:
            with self.context():
                self.runner(x)

        if self.options.compile:
            key = "x".join(str(d) for d in x.shape)
            if key not in self.stats.per_shape:
                before = self.stats.graphs_compiled
                self._sync()
                t0 = time.perf_counter()
                run()
                self._sync()
                self.stats.per_shape[key] = {
                    "first_call_ms": (time.perf_counter() - t0) * 1e3,
                    "graphs_compiled": float(self.stats.graphs_compiled - before),
                }
        return run

    def record_values(self, x: torch.Tensor) -> dict[str, float]:
        if not self.options.compile:
            return {}
        key = "x".join(str(d) for d in x.shape)
        shape = self.stats.per_shape[key]
        return {"compile_first_call_ms": shape["first_call_ms"], "compile_graphs_this_shape": shape["graphs_compiled"],
                "compile_graphs_total": float(self.stats.graphs_compiled)}

    def provenance(self) -> dict[str, Any]:
        return {
            "dtype_mode": self.options.dtype,
            "param_dtype": str(self.param_dtype),
            "autocast_dtype": str(self.autocast_dtype) if self.autocast_dtype else None,
            "channels_last": self.options.channels_last,
            "compile": self.options.compile,
            "compile_backend": self.options.compile_backend if self.options.compile else None,
            "compile_per_shape": self.stats.per_shape if self.options.compile else None,
        }
