"""Peak memory, measured in its own pass and its own process.

Rules: memory is never read during timing; each case runs in a fresh spawned Python process (``run_isolated``)
so the CPU peak is the peak RSS (VmHWM) of a process that ran only that case, minus its baseline before the model
was built. The child prepares the model exactly as the timed benches do (:class:`lvmharness.runtime.execution.Prepared`:
dtype/AMP, channels_last, torch.compile), then starts a fresh peak — on CUDA: CUDA initialised, ``empty_cache()``
(freeing the blocks the fp32-then-convert build left cached), ``reset_peak_memory_stats`` — runs the case, and reads
the peaks. An out-of-memory is a result (``status: oom``), never a silent change of batch size, and a child that
crashes or is killed is an ``error`` result while the caller goes on.

The child is ``python -m lvmharness.measure.memory '<case json>'`` (the protocol: :mod:`lvmharness.core.child`).
torch and the model code are imported inside the child's functions only: the parent side (``MemoryCase``,
``run_isolated``) serves the API's ``measure_memory``, whose caller need not have torch loaded.
"""

from __future__ import annotations

import functools
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from lvmharness.core import child, procfs
from lvmharness.core.child import ChildResult
from lvmharness.core.errors import BadValueError

if TYPE_CHECKING:
    import torch

    from lvmharness.models.aliases import ModelSpec
    from lvmharness.runtime.execution import ExecOptions

MODES = ("inference", "train_step")
# What a memory cap limits, per backend (recorded with every capped case).
CAP_SEMANTICS = {
    "cpu": "RLIMIT_DATA = VmData at start + cap: limits the heap and private anonymous mappings (where tensors "
           "live, Linux >= 4.7); file-backed mappings (shared libraries) are outside it",
    "cuda": "torch.cuda.set_per_process_memory_fraction(cap / total): limits the bytes the caching allocator may "
            "*reserve* on this device; the CUDA context, other libraries' allocations and other processes are "
            "outside it",
    "mps": "torch.mps.set_per_process_memory_fraction(cap / recommended_max_memory): limits the MPS allocator's "
           "allocations relative to Metal's recommended working set",
}


@dataclass(frozen=True)
class MemoryCase:
    model: str
    device: str = "cpu"
    dtype: str = "fp32"
    batch_size: int = 1
    img_size: int | None = None
    mode: str = "inference"
    channels_last: bool = False
    compile_backend: str | None = None  # torch.compile backend, or None for eager
    mem_limit_bytes: int | None = None  # enforced in the child: see CAP_SEMANTICS

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise BadValueError(f"mode {self.mode!r}: valid modes are {', '.join(MODES)}")
        if self.batch_size < 1:
            raise BadValueError(f"batch_size must be >= 1, got {self.batch_size}")


# --- in the child ------------------------------------------------------------------------------------------------


def _tensor_bytes(tensors: Any) -> int:
    import torch

    seen: set[int] = set()
    total = 0
    for t in tensors:
        if isinstance(t, torch.Tensor) and id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


class DeviceMemory:
    """The memory-statistics calls of one device, each logged to ``log`` (the child's order of steps is part of
    the measurement, and tests read it)."""

    def __init__(self, device: Any, log: Callable[[str], None]) -> None:
        from lvmharness.runtime.devices import synchronizer

        self.device = device
        self.cuda = device.type == "cuda"
        self.sync = synchronizer(device)
        self.log = log

    def init(self) -> dict[str, Any]:
        """Initialise the device before any statistic is touched: the CUDA caching allocator rejects
        ``reset_peak_memory_stats`` before init, and ``empty_cache`` before init is a no-op."""
        import torch

        info: dict[str, Any] = {}
        if self.cuda:
            torch.empty(1, device=self.device)  # creates the context and this device's allocator
            self.sync()
            free, total = torch.cuda.mem_get_info(self.device)
            # Free memory before this case ran: what the parent process and any other process still hold.
            info["cuda_mem_get_info_at_start"] = {"free_bytes": free, "total_bytes": total}
        self.log("init")
        return info

    def fresh_peak(self) -> bool:
        """Start a peak window now: wait for the device, give cached blocks back, reset the peaks (CUDA), and
        reset VmHWM to the current RSS. Returns whether VmHWM could be reset."""
        import torch

        self.sync()
        if self.cuda:
            torch.cuda.empty_cache()
            self.log("empty_cache")
            torch.cuda.reset_peak_memory_stats(self.device)
        reset = procfs.reset_peak_rss()
        self.log("reset_peak")
        return reset

    def allocated(self) -> int:
        import torch

        return int(torch.cuda.memory_allocated(self.device)) if self.cuda else 0

def measure_in_process(case: MemoryCase, *, log: Callable[[str], None] | None = None) -> ChildResult:
    """Run one memory case here. Meant for a fresh child process (``run_isolated``); raises on OOM.

    ``log`` receives the name of each step as it happens (``init``, ``empty_cache``, ``reset_peak``, ``prepared``,
    ``compiled``, ``forward``, ``backward``, ``step``)."""
    import torch

    from lvmharness.models.build import resolve
    from lvmharness.runtime.devices import resolve_device
    from lvmharness.runtime.execution import ExecOptions, numerics_settings

    steps: list[str] = []

    def step(name: str) -> None:
        steps.append(name)
        if log is not None:
            log(name)

    device = resolve_device(case.device)
    options = ExecOptions(dtype=case.dtype, channels_last=case.channels_last,
                          compile=case.compile_backend is not None, compile_backend=case.compile_backend or "inductor")
    spec = resolve(case.model)  # before the cap: resolving may import the model's module
    mem = DeviceMemory(device, step)
    prov: dict[str, Any] = {"isolation": "fresh process", "pid": os.getpid(), "mode": case.mode,
                            "settings": numerics_settings()}
    # Start the thread pools before any cap, so the cap measures the case and not thread stacks.
    torch.mm(torch.ones(64, 64), torch.ones(64, 64))
    prov.update(mem.init())
    if case.mem_limit_bytes is not None:
        _apply_limit(case.mem_limit_bytes, device, prov)
    values: dict[str, Any] = {}
    rss_base = procfs.status_bytes("VmRSS")
    prov["rss_peak_reset"] = mem.fresh_peak()
    base_alloc = mem.allocated()
    run = _CaseRun(case, mem, options, spec, values, prov)
    if case.mode == "inference":
        run.inference()
    else:
        run.train_step()
    _end_values(case, mem, values, base_alloc, rss_base, run.rss_before_fwd)
    prov["model"] = spec.timm_name
    prov["img_size"] = run.size
    prov["execution"] = run.prepared.provenance()
    prov["steps"] = steps
    return ChildResult("ok", None, values, prov)


class _CaseRun:
    """The prepared model of one case and its measured window: built, converted and (maybe) compiled before the
    window starts, so the window holds the step and not the preparation."""

    def __init__(self, case: MemoryCase, mem: DeviceMemory, options: ExecOptions, spec: ModelSpec,
                 values: dict[str, Any], prov: dict[str, Any]) -> None:
        import torch

        from lvmharness.models.build import create_model
        from lvmharness.runtime.execution import Prepared

        self.case, self.mem, self.values = case, mem, values
        device = mem.device
        self.size = size = case.img_size or spec.default_img_size
        # The same preparation as the timed benches: build (fp32), then convert dtype / memory format, maybe
        # compile. On CUDA in a 16-bit dtype the fp32 build happens on the CPU: converted on the device, each fp32
        # parameter's block is freed only after its bf16 copy was carved out of the same cached segments, and
        # segments that still hold a live bf16 tensor cannot be released by empty_cache(), so the reserved peak
        # would carry fp32 leftovers.
        build_on = build_device(device, options.dtype)
        prov["built_on"] = str(build_on)
        self.prepared = Prepared(create_model(spec, img_size=size, device=build_on), device, options)
        self.model = self.prepared.model
        self.x = self.prepared.make_input(case.batch_size, size)
        mem.log("prepared")
        values["mem_weights_bytes"] = _tensor_bytes(self.model.parameters())
        values["mem_buffers_bytes"] = _tensor_bytes(self.model.buffers())
        values["mem_input_bytes"] = self.x.numel() * self.x.element_size()
        gen = torch.Generator().manual_seed(0)
        self.target = torch.randint(0, 1000, (case.batch_size,), generator=gen).to(device)
        if options.compile:
            self._compile(prov)
        if mem.cuda:
            # cuBLAS and cuBLASLt allocate their workspaces through the caching allocator on the first GEMM of a
            # stream (torch/csrc/cuda/CUDABlas.cpp, getCurrentCUDABlasHandle / getCUDABlasLtWorkspace: MiBs
            # each), and keep them: made before the baseline, they are not counted as the forward's activations.
            prov["cublas_workspace_bytes"] = _warm_cublas(device, self.prepared.compute_dtype)
        # Fresh peak after conversion: the fp32 blocks freed by .to(dtype) are given back before the reset, else
        # the reserved peak would start at "converted model + cached fp32 copy".
        mem.fresh_peak()
        self.before_fwd = mem.allocated()
        self.rss_before_fwd = procfs.status_bytes("VmRSS")

    def _loss(self) -> torch.Tensor:
        import torch

        with self.prepared.autocast():
            return torch.nn.functional.cross_entropy(self.prepared(self.x).float(), self.target)

    def _compile(self, prov: dict[str, Any]) -> None:
        """Compile outside the measured window (compiling is host work with its own memory); the window then holds
        what the compiled code needs. A train step's compile needs a backward too; its grads are dropped."""
        if self.case.mode == "inference":
            self.model.eval()
            self.prepared.forward_fn(self.x)
        else:
            self.model.train()
            self._loss().backward()
            self.model.zero_grad(set_to_none=True)
        self.mem.log("compiled")
        prov["compile"] = {"backend": self.prepared.options.compile_backend, "first_call_outside_window": True,
                           "graphs_compiled": self.prepared.stats.graphs_compiled}

    def _forward_peak(self) -> None:
        import torch

        self.mem.sync()
        self.mem.log("forward")
        if self.mem.cuda:
            self.values["mem_activations_peak_bytes"] = torch.cuda.max_memory_allocated(self.mem.device) - \
                self.before_fwd

    def inference(self) -> None:
        self.model.eval()
        with self.prepared.context():
            self.prepared(self.x)
        self._forward_peak()

    def train_step(self) -> None:
        import torch

        self.model.train()
        opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        loss = self._loss()
        self._forward_peak()
        hwm_fwd = procfs.status_bytes("VmHWM")
        if hwm_fwd is not None and self.rss_before_fwd is not None:
            self.values["rss_forward_peak_delta_bytes"] = hwm_fwd - self.rss_before_fwd
        loss.backward()
        self.mem.log("backward")
        opt.step()
        self.mem.sync()
        self.mem.log("step")
        self.values["mem_grads_bytes"] = _tensor_bytes(p.grad for p in self.model.parameters() if p.grad is not None)
        self.values["mem_optimizer_bytes"] = _tensor_bytes(
            t for state in opt.state.values() for t in state.values() if isinstance(t, torch.Tensor)
        )


def _end_values(case: MemoryCase, mem: DeviceMemory, values: dict[str, Any], base_alloc: int,
                rss_base: int | None, rss_before_fwd: int | None) -> None:
    """The peaks over the whole case: the allocator's (CUDA), the end amounts (MPS), the process's RSS."""
    import torch

    device = mem.device
    if mem.cuda:
        values["mem_allocated_peak_bytes"] = torch.cuda.max_memory_allocated(device) - base_alloc
        values["mem_reserved_peak_bytes"] = torch.cuda.max_memory_reserved(device)
        values["mem_allocated_end_bytes"] = torch.cuda.memory_allocated(device) - base_alloc
    elif device.type == "mps":
        # The MPS backend keeps no peak statistics: these are amounts at the end of the case, not peaks.
        values["mps_allocated_end_bytes"] = torch.mps.current_allocated_memory()
        values["mps_driver_allocated_end_bytes"] = torch.mps.driver_allocated_memory()
    hwm = procfs.status_bytes("VmHWM")
    if hwm is not None and rss_base is not None:
        values["rss_peak_bytes"] = hwm
        values["rss_baseline_bytes"] = rss_base
        values["rss_peak_delta_bytes"] = hwm - rss_base
        if case.mode == "inference" and rss_before_fwd is not None:
            values["rss_forward_peak_delta_bytes"] = hwm - rss_before_fwd


def _apply_limit(limit: int, device: Any, prov: dict[str, Any]) -> None:
    prov["mem_limit_semantics"] = CAP_SEMANTICS.get(device.type)
    if device.type == "cuda":
        import torch

        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, limit / total), device)
        prov["mem_limit"] = f"torch.cuda.set_per_process_memory_fraction({limit}/{total})"
        return
    if device.type == "mps":
        import torch

        recommended = torch.mps.recommended_max_memory()
        torch.mps.set_per_process_memory_fraction(min(2.0, limit / recommended))  # torch accepts 0..2
        prov["mem_limit"] = f"torch.mps.set_per_process_memory_fraction({limit}/{recommended})"
        return
    # RLIMIT_DATA covers the heap and private anonymous mappings (Linux >= 4.7): what tensors allocate.
    data_now = procfs.status_bytes("VmData") or 0
    soft = data_now + limit
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
    prov["mem_limit"] = f"RLIMIT_DATA = VmData at start ({data_now}) + {limit}"


# --- in the parent ------------------------------------------------------------------------------------------------


def run_isolated(
    case: MemoryCase,
    *,
    timeout_s: float = 900.0,
    on_spawn: Callable[[subprocess.Popen[str]], None] | None = None,
) -> ChildResult:
    """Run ``case`` in a fresh Python process and return its result; never raises for the child's failures."""
    res = child.run_module("lvmharness.measure.memory", asdict(case), timeout_s=timeout_s, on_spawn=on_spawn)
    if res.status == "error" and case.mem_limit_bytes is None and "SIGKILL" in (res.error or ""):
        res.error = (res.error or "") + " (the kernel's OOM killer, or someone, killed it)"
    return res


def _warm_cublas(device: torch.device, compute_dtype: torch.dtype) -> int:
    """Run a GEMM and a GEMM with bias (cuBLASLt) on ``device`` in fp32 and the compute dtype; returns the bytes
    their libraries kept allocated."""
    import torch

    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    for dt in dict.fromkeys((torch.float32, compute_dtype)):
        a = torch.ones(64, 64, device=device, dtype=dt)
        torch.nn.functional.linear(a, a, a[0])
        torch.mm(a, a)
        del a
    torch.cuda.synchronize(device)
    return int(torch.cuda.memory_allocated(device) - before)


def build_device(device: torch.device, dtype: str) -> torch.device:
    """Where a memory case builds its fp32 model before ``Prepared`` moves and converts it in one copy per tensor:
    the CPU for a CUDA case whose weights are not fp32, else the case's device."""
    import torch

    from lvmharness.runtime.execution import check_dtype_mode

    if device.type == "cuda" and check_dtype_mode(dtype, device)[0] != torch.float32:
        return torch.device("cpu")
    return device


def _prepare_child(payload: dict[str, Any]) -> Callable[[], ChildResult]:
    return functools.partial(measure_in_process, MemoryCase(**payload))


if __name__ == "__main__":
    sys.exit(child.main(sys.argv, _prepare_child))
