"""The profiled steps -> time per module.

``torch.profiler`` records every aten op; each op's *self* time (CPU time on CPU, on CUDA the time of the kernels
it launched) is summed onto the innermost ``lvm.module::<path>`` range that encloses it: the module that issued it.
Backward ops run after every forward range has closed. Autograd stamps each backward node with the sequence number
of the forward op that created it, so a backward node's time goes to the module of that forward op.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lvmharness.measure.layers.hooks import MODULE_RANGE

STEP_RANGE = "lvm.step#"
_BACKWARD_NODE = "autograd::engine::evaluate_function: "

# (kind, module path, top-level op): ('fwd', path, op) | ('bwd', None, None) | ('outside', None, None)
_Origin = tuple[str, str | None, str | None]


@dataclass
class StepTimes:
    """Microseconds of one profiled step, by where they went."""

    fwd: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # module path -> own forward op time
    bwd: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # module path -> its backward time
    own_ops: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    outside_fwd: float = 0.0  # ops outside every module range (the loss, input casts)
    outside_bwd: float = 0.0  # backward nodes with no forward module (gradient accumulation, the loss)
    module_python: float = 0.0  # self time of the module ranges: Python between ops, hooks
    step_python: float = 0.0  # self time of the step range outside the model

    @property
    def total_ops(self) -> float:
        return sum(self.fwd.values()) + sum(self.bwd.values()) + self.outside_fwd + self.outside_bwd


def _op_time_us(e: Any, cuda: bool) -> float:
    return float(e.self_device_time_total if cuda else e.self_cpu_time_total)


def _on_cpu(e: Any) -> bool:
    """A CPU-side event (``device_type`` DeviceType.CPU; a hand-made event without one counts as CPU)."""
    return getattr(e.device_type, "name", "CPU") == "CPU"


def _step_index(e: Any, bounds: list[tuple[float, float]]) -> int | None:
    t = e.time_range.start
    for i, (a, b) in enumerate(bounds):
        if a <= t <= b:
            return i
    return None


def _classify(e: Any, cache: dict[int, _Origin]) -> _Origin:
    """Where an op event belongs: the module range that encloses its top-level op, a backward node, or neither."""
    key = id(e)
    if key in cache:
        return cache[key]
    top = e
    parent = e.cpu_parent
    result: _Origin = ("outside", None, None)
    while parent is not None:
        if parent.name.startswith(MODULE_RANGE):
            result = ("fwd", parent.name[len(MODULE_RANGE):], top.name)
            break
        if parent.name.startswith(STEP_RANGE):
            break
        top = parent
        parent = parent.cpu_parent
    if top.name.startswith(_BACKWARD_NODE):
        result = ("bwd", None, None)
    cache[key] = result
    return result


def _forward_origins(ordered: list[Any], cache: dict[int, _Origin]) -> dict[tuple[int, int], str]:
    """(thread, sequence number) -> path of the module whose forward op has it; backward nodes carry the same."""
    origin: dict[tuple[int, int], str] = {}
    for e in ordered:
        if e.name.startswith((MODULE_RANGE, STEP_RANGE)) or not _on_cpu(e):
            continue
        kind, path, _ = _classify(e, cache)
        if kind == "fwd" and path is not None and e.sequence_nr >= 0:
            origin.setdefault((e.thread, e.sequence_nr), path)
    return origin


def _add_op(st: StepTimes, e: Any, us: float, cache: dict[int, _Origin],
            origin: dict[tuple[int, int], str]) -> None:
    """Book one op's time on its forward module, the module of its backward node's forward op, or outside."""
    kind, path, top = _classify(e, cache)
    if kind == "fwd" and path is not None and top is not None:
        st.fwd[path] += us
        st.own_ops[path][top] += us
    elif kind == "bwd":
        node = e
        while node.cpu_parent is not None and not node.name.startswith(_BACKWARD_NODE):
            node = node.cpu_parent
        bpath = origin.get((node.fwd_thread, node.sequence_nr))
        if bpath is None:
            st.outside_bwd += us
        else:
            st.bwd[bpath] += us
    else:
        st.outside_fwd += us


def attribute(events: Sequence[Any], *, cuda: bool = False) -> list[StepTimes]:
    """Sum each op's self time onto the module that issued it, per ``lvm.step#i`` range (in step order)."""
    # With CUDA activity kineto adds a device-side twin of a ``record_function`` range (``gpu_user_annotation``,
    # device type CUDA, same name) whenever kernels launch directly under it, as the loss kernels do under the step
    # range; torch's own table code drops them (torch/autograd/profiler_util.py). Only the CPU ranges are steps.
    steps = sorted((e for e in events if e.name.startswith(STEP_RANGE) and _on_cpu(e)),
                   key=lambda e: e.time_range.start)
    out = [StepTimes() for _ in steps]
    bounds = [(e.time_range.start, e.time_range.end) for e in steps]
    cache: dict[int, _Origin] = {}
    ordered = sorted(events, key=lambda e: e.time_range.start)
    origin = _forward_origins(ordered, cache)
    for e in ordered:
        i = _step_index(e, bounds)
        if i is None or not _on_cpu(e):
            continue
        st = out[i]
        if e.name.startswith(STEP_RANGE):
            st.step_python += float(e.self_cpu_time_total)
        elif e.name.startswith(MODULE_RANGE):
            st.module_python += float(e.self_cpu_time_total)
        else:
            _add_op(st, e, _op_time_us(e, cuda), cache, origin)
    return out
