"""Execution options that change a number — dtype / AMP, channels_last, torch.compile — and the one way to apply them.

Vocabulary (one meaning each):

* :func:`autocast` — the only place an AMP context is built (inference, memory and training all use it);
* :class:`Prepared` — a model made ready under :class:`ExecOptions` (dtype, memory format, compile). Calling it runs
  the forward (compiled or eager); :meth:`Prepared.make_input` builds the matching input. Latency, per-instance
  latency and the isolated memory child all measure a ``Prepared`` model, so an option means the same everywhere;
* a *round driver* (``measure.latency.RoundDriver``) is what calls a timed round ``n`` times — never a model.

``torch.compile``'s first call at a new input shape (the compile) is timed and recorded apart from steady-state
time, with the number of graphs compiled for that shape — never hidden inside warm-up. A shape that compiled no
graph ran eager (Dynamo gives up after ``torch._dynamo.config.recompile_limit`` recompiles of one code object):
the harness resets Dynamo and compiles again rather than record an eager run as compiled.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from lvmharness.core.errors import BadValueError
from lvmharness.core.vocab import DTYPE_NAMES
from lvmharness.runtime.devices import DeviceUnavailableError, on_device, synchronizer

# name -> (dtype of weights and inputs, autocast dtype or None)
DTYPE_MODES: dict[str, tuple[torch.dtype, torch.dtype | None]] = dict(zip(DTYPE_NAMES, (
    (torch.float32, None),
    (torch.bfloat16, None),
    (torch.float16, None),
    (torch.float32, torch.bfloat16),
    (torch.float32, torch.float16),
), strict=True))


def check_dtype_mode(name: str, device: torch.device) -> tuple[torch.dtype, torch.dtype | None]:
    if name not in DTYPE_MODES:
        raise BadValueError(f"unknown dtype {name!r}: valid dtypes are {', '.join(DTYPE_MODES)}")
    if device.type == "cpu" and name in ("fp16", "amp_fp16"):
        # CPU fp16 kernels are emulated for many ops: the number would describe the emulation, not the model.
        raise DeviceUnavailableError(f"dtype {name} is not measured on cpu (emulated kernels); use fp32 or bf16")
    return DTYPE_MODES[name]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """The AMP context for ``device``: autocast to ``dtype``, or explicitly disabled when ``dtype`` is None.

    Disabled (rather than a null context) so an outer autocast cannot leak into a case that asked for none.
    """
    if dtype is None:
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=dtype)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 natively. On CUDA this asks *that* GPU (``torch.cuda.is_bf16_supported`` asks
    the current one) and excludes emulation: its default ``including_emulation=True`` is true on pre-Ampere GPUs,
    where bf16 runs emulated (and slow)."""
    if device.type != "cuda":
        return device.type in ("cpu", "mps")
    with on_device(device):
        return torch.cuda.is_bf16_supported(including_emulation=False)


def auto_amp_dtype(device: torch.device) -> torch.dtype:
    """The AMP dtype when the user asked for AMP without naming one: bf16 where native, else fp16 (which then
    needs a GradScaler in training)."""
    return torch.bfloat16 if native_bf16(device) else torch.float16


def numerics_settings() -> dict[str, Any]:
    """Every global setting that changes a number (time or value), for the provenance of every record."""
    return {
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "mkldnn_enabled": bool(torch.backends.mkldnn.enabled),
    }


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


class CompileFallbackError(RuntimeError):
    """torch.compile ran a shape eagerly (no graph compiled) even after a reset: the record would lie."""


# Bumped by every Dynamo reset this module makes: a shape compiled under an older generation must compile again.
_dynamo_generation = 0


def _reset_dynamo() -> None:
    global _dynamo_generation
    import torch._dynamo

    torch._dynamo.reset()
    _dynamo_generation += 1


def _recompile_limit() -> int:
    import torch._dynamo

    return int(torch._dynamo.config.recompile_limit)


@dataclass
class CompileStats:
    graphs_compiled: int = 0  # backend invocations: one per graph, recompiles and graph breaks included
    dynamo_resets: int = 0  # resets made because the next shape would exceed Dynamo's recompile limit
    per_shape: dict[str, dict[str, float]] = field(default_factory=dict)


def shape_key(x: torch.Tensor) -> str:
    return "x".join(str(d) for d in x.shape)


class Prepared:
    """A model made ready under some options. ``prepared(x)`` runs one forward (compiled or eager, no grad or
    AMP context of its own); :meth:`forward_fn` gives the timed-round callable for one input."""

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
        self._call: Callable[[torch.Tensor], Any] = model
        self._shapes_this_generation: set[str] = set()
        self._generation = _dynamo_generation
        if options.compile:
            # A new model: drop every cached graph (guards of a previous model would count against the limit).
            _reset_dynamo()
            self._generation = _dynamo_generation
            self._call = self._compile()

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the layers compute in (autocast's under AMP)."""
        return self.autocast_dtype or self.param_dtype

    def _compile(self) -> Callable[[torch.Tensor], Any]:
        from torch import _dynamo

        inner = _dynamo.lookup_backend(self.options.compile_backend)

        def counting_backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
            self.stats.graphs_compiled += 1
            return inner(gm, example_inputs)

        # dynamic=False: a new input shape is a recompile, which is exactly what we want to see and count.
        return torch.compile(self.model, backend=counting_backend, dynamic=False)

    def __call__(self, x: torch.Tensor) -> Any:
        return self._call(x)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.device, self.autocast_dtype)

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        """Inference: no autograd, and the case's AMP."""
        with torch.inference_mode(), self.autocast():
            yield

    def make_input(self, batch: int, img_size: int, seed: int = 0) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, 3, img_size, img_size, generator=gen).to(self.device, self.param_dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.options.channels_last else x

    def compile_for(self, run: Callable[[], Any], x: torch.Tensor) -> None:
        """Under compile, make sure ``x``'s shape has compiled graphs, timing that first call apart.

        Before a shape that would pass Dynamo's recompile limit (after which Dynamo silently runs the code
        eagerly), Dynamo is reset and the shape compiles afresh; a shape that still compiles no graph raises.
        """
        if not self.options.compile:
            return
        key = shape_key(x)
        if self._generation != _dynamo_generation:  # someone reset Dynamo: every shape compiles again
            self._shapes_this_generation.clear()
            self._generation = _dynamo_generation
        if key in self._shapes_this_generation:
            return
        if len(self._shapes_this_generation) >= _recompile_limit():
            _reset_dynamo()
            self.stats.dynamo_resets += 1
            self._shapes_this_generation.clear()
            self._generation = _dynamo_generation
        before = self.stats.graphs_compiled
        self._sync()
        t0 = time.perf_counter()
        run()
        self._sync()
        elapsed_ms = (time.perf_counter() - t0) * 1e3
        graphs = self.stats.graphs_compiled - before
        if graphs == 0:
            raise CompileFallbackError(
                f"torch.compile compiled no graph for input shape {key}: Dynamo ran it eagerly (recompile limit "
                f"{_recompile_limit()} reached, or the model cannot be captured); not recording an eager run as "
                "compiled"
            )
        self._shapes_this_generation.add(key)
        self.stats.per_shape[key] = {"first_call_ms": elapsed_ms, "graphs_compiled": float(graphs)}

    def forward_fn(self, x: torch.Tensor) -> Callable[[], None]:
        """One inference forward on ``x``. Under compile the first call at this shape is timed here, apart."""

        def run() -> None:
            with self.context():
                self._call(x)

        self.compile_for(run, x)
        return run

    def record_values(self, x: torch.Tensor) -> dict[str, float]:
        if not self.options.compile:
            return {}
        shape = self.stats.per_shape[shape_key(x)]
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
            "compile_dynamo_resets": self.stats.dynamo_resets if self.options.compile else None,
        }
