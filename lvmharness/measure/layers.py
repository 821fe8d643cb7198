"""Measured time per module: where a forward (and a training step's backward) spends its time.

A pass of its own, never inside timed rounds: the profiler and the hooks cost time. Method:

* forward pre/post hooks open and close a profiler range ``lvm.module::<path>`` around every module call;
* ``torch.profiler`` records every aten op; each op's *self* time — CPU time on CPU, on CUDA the time of the
  kernels it launched — is summed onto the innermost module range that encloses it: the module that issued it;
* backward ops run after every forward range has closed. Autograd stamps each backward node with the sequence
  number of the forward op that created it, so a backward node's time goes to the module of that forward op;
* the same step is timed without profiler and hooks (or its p50 is given, from the bench's timed rounds). The direct
  children of the model should account for that p50; the gap is split into ops outside any child module (the
  model's own forward code, the loss) and the rest: Python, dispatch and profiler overhead between ops.

Beside the times, a dispatch-mode pass counts per module the FLOPs (the MAC counter's formulas: 2 per
multiply-accumulate) and the bytes every aten op reads and writes (from shapes and dtypes; views move nothing).
Those give each leaf an arithmetic intensity and an achieved FLOP/s, placed against the compute peak of
:mod:`lvmharness.measure.peak` (its best matmul/convolution probe, or the theoretical peak where higher) and the
measured copy bandwidth (:mod:`lvmharness.measure.roofline`): the roofline of Williams, Waterman and Patterson
("Roofline: an insightful visual performance model", CACM 2009).

Document format ``lvmharness.layers`` version 1 (``lvm layers --json`` prints it, ``-o`` writes it)::

    {"format": "lvmharness.layers", "version": 1, "model", "alias", "family", "img_size", "batch_size", "dtype",
     "device", "mode", "clock", "reference": {"p50_ms", "source", ...}, "totals": {...}, "peaks": {...},
     "by_type": {"attention": ms, ...}, "nodes": [NODE, ...]}   # nodes in pre-order, the model first
    NODE = {"path", "name", "type", "depth", "parent", "calls", "leaf", "layer_type", "ms", "fwd_ms", "bwd_ms",
            "own_ms", "share_time", "macs", "share_macs", "flops", "bytes", "achieved_flops_per_s",
            "own_ops": {op: ms}, "roofline": {...} | null}
"""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from lvmharness import __version__
from lvmharness.formats.graph_format import LAYERS_FORMAT, LAYERS_VERSION
from lvmharness.measure.flops import EXTRA_FORMULAS, UncountedOpError, carries_macs, count_run
from lvmharness.measure.latency import Timer, TimingConfig
from lvmharness.measure.peak import ProbeCache
from lvmharness.measure.roofline import place
from lvmharness.runtime.devices import synchronizer
from lvmharness.runtime.execution import Prepared
from lvmharness.store.results import utc_now

MODES = ("inference", "train")
MODULE_RANGE = "lvm.module::"
STEP_RANGE = "lvm.step#"
_BACKWARD_NODE = "autograd::engine::evaluate_function: "
# How far the direct children's sum may fall from the measured p50 before the pass says so.
CHILDREN_TOLERANCE = 0.10
LAYER_TYPES = ("attention", "mlp", "conv", "norm", "embedding", "head", "other")


class LayerTimingError(ValueError):
    """A per-layer measurement that cannot be made as asked (compiled model, unknown mode, zero steps)."""


# Why MPS is refused: the profiler has no MPS device clock, so an op's time there would be the CPU self time of
# encoding the op into Metal's command buffer, which returns before the GPU runs it (an asynchronous backend), not
# the op's time. Refused until torch.profiler reports MPS kernel time.
MPS_REFUSAL = ("time per layer is not available on MPS: the profiler has no MPS device clock, so op times there "
               "would be CPU encoding times, not kernel times; use --device cpu or cuda")


def refuse_mps(device: torch.device) -> None:
    if device.type == "mps":
        raise LayerTimingError(MPS_REFUSAL)


# --- which module issued what: hooks that open a profiler range per module call ---------------------------------


def module_paths(net: nn.Module) -> dict[int, str]:
    """id(module) -> its first path in ``named_modules`` order (a shared module is reported where it first sits)."""
    return {id(m): p for p, m in reversed(list(net.named_modules()))}


@contextlib.contextmanager
def _every_call(net: nn.Module, pre: Callable[[nn.Module, Any], None],
                post: Callable[[nn.Module, Any, Any], None]) -> Iterator[None]:
    """``pre`` before and ``post`` after every module call of ``net`` (``post`` also when the call raises), hooks
    removed on exit."""
    handles = []
    for mod in net.modules():
        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post, always_call=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def module_ranges(net: nn.Module) -> Iterator[None]:
    """Open a ``lvm.module::<path>`` profiler range around every module call (nothing is recorded when no profiler
    runs: the ranges then cost one dispatcher call each)."""
    paths = module_paths(net)
    stack: list[Any] = []

    def pre(mod: nn.Module, args: Any) -> None:
        stack.append(torch.ops.profiler._record_function_enter_new(MODULE_RANGE + paths[id(mod)], None))

    def post(mod: nn.Module, args: Any, out: Any) -> None:
        torch.ops.profiler._record_function_exit._RecordFunction(stack.pop())

    with _every_call(net, pre, post):
        yield


@contextlib.contextmanager
def _path_stack(net: nn.Module, stack: list[str], calls: dict[str, int]) -> Iterator[None]:
    """Keep ``stack`` equal to the paths of the module calls in progress (innermost last); count the calls."""
    paths = module_paths(net)

    def pre(mod: nn.Module, args: Any) -> None:
        stack.append(paths[id(mod)])
        calls[stack[-1]] += 1

    def post(mod: nn.Module, args: Any, out: Any) -> None:
        stack.pop()

    with _every_call(net, pre, post):
        yield


# --- FLOPs and bytes per module, from one forward under a dispatch mode ----------------------------------------

_NO_TRAFFIC = re.compile(r"(new_)?empty(_like|_strided|_permuted)?|detach|lift_fresh|_to_copy_no_op")


@dataclass
class OpTraffic:
    """Forward FLOPs (2 per multiply-accumulate) and bytes read + written by the ops each module issued itself."""

    flops: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    bytes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    op_calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    module_calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def op_bytes(func: Any, args: Any, kwargs: Any, out: Any) -> int:
    """Bytes an aten op reads and writes: every tensor argument read once, every output written once.

    Views (``func.is_view``: reshape, permute, transpose, expand …) and allocations (``empty*``) move nothing.
    An in-place op counts its tensor twice (read and written), which is what it does.
    """
    name = func._schema.name.split("::")[-1]
    if getattr(func, "is_view", False) or _NO_TRAFFIC.fullmatch(name):
        return 0
    total = 0
    for t in tree_leaves((args, kwargs, out)):
        if isinstance(t, torch.Tensor):
            total += t.numel() * t.element_size()
    return total


class _TrafficMode(TorchDispatchMode):
    def __init__(self, stack: list[str], traffic: OpTraffic) -> None:
        super().__init__()
        from torch.utils.flop_counter import FlopCounterMode

        # FlopCounterMode wraps every formula (ours included) to take shapes; reuse its table so the FLOPs here
        # are exactly the MAC counter's.
        self.registry = FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS).flop_registry
        self.stack = stack
        self.traffic = traffic
        self.uncounted: dict[str, int] = defaultdict(int)

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet not in self.registry:
            # Composite ops (linear, conv2d, sdpa under inference_mode) reach the mode whole; count their parts.
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        path = self.stack[-1] if self.stack else ""
        if packet in self.registry:
            self.traffic.flops[path] += int(self.registry[packet](*args, **kwargs, out_val=out))
        elif carries_macs(str(packet)):
            self.uncounted[str(packet)] += 1
        self.traffic.bytes[path] += op_bytes(func, args, kwargs, out)
        self.traffic.op_calls[path] += 1
        return out


def forward_traffic(net: nn.Module, run: Callable[[], Any]) -> OpTraffic:
    """FLOPs and bytes per module (own ops only) of whatever ``run`` executes; fails on an uncounted MAC op."""
    stack: list[str] = []
    traffic = OpTraffic()
    mode = _TrafficMode(stack, traffic)
    with _path_stack(net, stack, traffic.module_calls), mode:
        run()
    if mode.uncounted:
        raise UncountedOpError(dict(mode.uncounted))
    return traffic


# --- the profiled steps -> time per module ----------------------------------------------------------------------


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


def attribute(events: Sequence[Any], *, cuda: bool = False) -> list[StepTimes]:
    """Sum each op's self time onto the module that issued it, per ``lvm.step#i`` range (in step order)."""
    # With CUDA activity kineto adds a device-side twin of a ``record_function`` range (``gpu_user_annotation``,
    # device type CUDA, same name) whenever kernels launch directly under it, as the loss kernels do under the step
    # range; torch's own table code drops them (torch/autograd/profiler_util.py). Only the CPU ranges are steps.
    steps = sorted((e for e in events if e.name.startswith(STEP_RANGE) and _on_cpu(e)),
                   key=lambda e: e.time_range.start)
    out = [StepTimes() for _ in steps]
    bounds = [(e.time_range.start, e.time_range.end) for e in steps]

    def step_of(e: Any) -> int | None:
        t = e.time_range.start
        for i, (a, b) in enumerate(bounds):
            if a <= t <= b:
                return i
        return None

    # Where each forward op ran: (thread, sequence number) -> module path. Backward nodes carry the same number.
    origin: dict[tuple[int, int], str] = {}
    owner: dict[int, tuple[str, str | None, str | None]] = {}  # id(event) -> (kind, path, top op)

    def classify(e: Any) -> tuple[str, str | None, str | None]:
        """('fwd', path, top-level op) | ('bwd', None, backward node event name) | ('outside', None, None)."""
        key = id(e)
        if key in owner:
            return owner[key]
        top = e
        parent = e.cpu_parent
        result: tuple[str, str | None, str | None] = ("outside", None, None)
        while parent is not None:
            if parent.name.startswith(MODULE_RANGE):
                result = ("fwd", parent.name[len(MODULE_RANGE):], top.name)
                break
            if parent.name.startswith(STEP_RANGE):
                break
            if key in owner:
                break
            top = parent
            parent = parent.cpu_parent
        if top.name.startswith(_BACKWARD_NODE):
            result = ("bwd", None, None)
        owner[key] = result
        return result

    ordered = sorted(events, key=lambda e: e.time_range.start)
    for e in ordered:
        if e.name.startswith((MODULE_RANGE, STEP_RANGE)) or not _on_cpu(e):
            continue
        kind, path, _ = classify(e)
        if kind == "fwd" and path is not None and e.sequence_nr >= 0:
            origin.setdefault((e.thread, e.sequence_nr), path)

    for e in ordered:
        i = step_of(e)
        if i is None or not _on_cpu(e):
            continue
        st = out[i]
        if e.name.startswith(STEP_RANGE):
            st.step_python += float(e.self_cpu_time_total)
            continue
        if e.name.startswith(MODULE_RANGE):
            st.module_python += float(e.self_cpu_time_total)
            continue
        us = _op_time_us(e, cuda)
        kind, path, top = classify(e)
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
    return out


# --- layer types: the seed's question (attention vs MLP vs conv ...) ----------------------------------------------

_ATTENTION = re.compile(r".*(Attention|Attn).*")
_MLP = re.compile(r".*(Mlp|MLP|FeedForward|FFN).*")
_EMBED = re.compile(r".*(PatchEmbed|Embed(ding)?)$")
_HEAD_NAMES = {"head", "fc", "classifier", "head_drop", "fc_norm", "global_pool", "pre_logits"}


def layer_type(path: str, types: dict[str, str]) -> str:
    """Category of the module at ``path``: the nearest enclosing attention / MLP / embedding / head module wins,
    else the leaf's own kind (conv, norm), else ``other`` (activations, pooling, dropout, merges)."""
    parts = path.split(".") if path else []
    for depth in range(len(parts), 0, -1):
        p = ".".join(parts[:depth])
        name, typ = parts[depth - 1], types.get(p, "")
        if _ATTENTION.fullmatch(typ) or name in ("attn", "attention"):
            return "attention"
        if _MLP.fullmatch(typ) or name in ("mlp", "ffn"):
            return "mlp"
        if _EMBED.fullmatch(typ) or name in ("patch_embed", "stem"):
            return "embedding"
        if (depth == 1 and name in _HEAD_NAMES) or typ.endswith("ClassifierHead"):
            return "head"
    typ = types.get(path, "")
    if "Conv" in typ:
        return "conv"
    if "Norm" in typ:
        return "norm"
    return "other"


# --- the pass ----------------------------------------------------------------------------------------------------


def _median_step(steps: list[StepTimes]) -> int:
    """Index of the step whose total op time is the (lower) median: one whole step, so the tree stays additive."""
    order = sorted(range(len(steps)), key=lambda i: steps[i].total_ops)
    return order[(len(order) - 1) // 2]


def step_function(prepared: Prepared, x: torch.Tensor, mode: str) -> Callable[[], None]:
    """One forward (inference: eval + inference_mode) or one training step's forward + backward (no optimizer
    step: the weights stay as they are)."""
    net = prepared.model
    if mode == "inference":
        return prepared.forward_fn(x)
    gen = torch.Generator().manual_seed(0)
    target: list[torch.Tensor] = []

    def run() -> None:
        net.zero_grad(set_to_none=True)
        with prepared.autocast():
            logits = net(x)
        if not target:
            target.append(torch.randint(0, logits.shape[-1], (x.shape[0],), generator=gen).to(x.device))
        loss = torch.nn.functional.cross_entropy(logits.float(), target[0])
        loss.backward()

    return run


def measure_layers(
    prepared: Prepared,
    x: torch.Tensor,
    *,
    mode: str = "inference",
    steps: int = 5,
    warmup: int = 2,
    reference_ms: float | None = None,
    reference_source: str | None = None,
    timing: TimingConfig | None = None,
    peaks: dict[str, Any] | None = None,
    model: str | None = None,
    alias: str | None = None,
    family: str = "",
) -> dict[str, Any]:
    """Time per module of ``prepared.model`` on input ``x``; returns the ``lvmharness.layers`` document.

    ``reference_ms``: the p50 of the same step from timed rounds (a bench passes its latency p50); without it the
    step is timed here first, without profiler or hooks. ``peaks``: ``{"flops_per_s", "bytes_per_s"}`` measured
    on this device, for the roofline (leaves get no roofline without them).
    """
    refuse_mps(prepared.device)
    if mode not in MODES:
        raise LayerTimingError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if steps < 1 or warmup < 0:
        raise LayerTimingError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    if prepared.options.compile:
        raise LayerTimingError("time per layer needs eager execution: torch.compile fuses modules away; drop "
                               "--compile for this pass")
    net = prepared.model
    device = prepared.device
    cuda = device.type == "cuda"
    was_training = net.training
    saved_buffers = {k: v.detach().clone() for k, v in net.state_dict().items() if not isinstance(v, nn.Parameter)}
    net.train(mode == "train")
    step = step_function(prepared, x, mode)
    sync = synchronizer(device)  # names the case's device: a bare torch.cuda.synchronize() waits for the current one
    try:
        reference: dict[str, Any]
        if reference_ms is None:
            timer = Timer(device, timing or TimingConfig(warmup_rounds=max(warmup, 1), budget_s=1.0, min_rounds=5))
            res = timer.measure(step, key=("layers", mode, tuple(x.shape)))
            reference = {"p50_ms": res.stats.p50, "iqr_ms": res.stats.iqr, "rounds": res.rounds,
                         "source": f"timed here without profiler or hooks ({res.rounds} rounds)"}
            contention = getattr(res, "contention", None)
            if contention is not None:  # a busy machine makes both the p50 and the profiled steps suspect
                reference.update(contention.values())
        else:
            reference = {"p50_ms": float(reference_ms), "source": reference_source or "given"}

        from torch.profiler import ProfilerActivity, profile, record_function

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with module_ranges(net):
            for _ in range(warmup):
                step()
            sync()
            from lvmharness.measure.contention import Window

            with Window(device, torch.get_num_threads()) as window, \
                    profile(activities=activities, record_shapes=False) as prof:
                for i in range(steps):
                    with record_function(f"{STEP_RANGE}{i}"):
                        step()
                        sync()
            # Other processes during the profiled steps inflate op times (on a shared CPU an OpenMP barrier waits
            # for a descheduled thread): recorded next to the times, never hidden.
            if window.result is not None:
                reference["profiled_steps"] = window.result.values()
        per_step = attribute(list(prof.events()), cuda=cuda)
        if len(per_step) != steps:
            raise RuntimeError(f"profiled {steps} steps but found {len(per_step)} step ranges in the trace")

        if mode == "inference":
            traffic = forward_traffic(net, step)
            macs_fwd_bwd: dict[str, int] | None = None
        else:
            net.eval()  # FLOPs and bytes of the forward; train mode changes no MAC and no shape

            def fwd() -> None:
                with torch.no_grad():
                    net(x)

            traffic = forward_traffic(net, fwd)
            counts = count_run(net, step)
            macs_fwd_bwd = {p: sum(ops.values()) for p, ops in counts.by_module.items()}
            net.zero_grad(set_to_none=True)
    finally:
        net.train(was_training)
        if mode == "train":
            net.zero_grad(set_to_none=True)
        with torch.no_grad():
            state = net.state_dict()
            for k, v in saved_buffers.items():
                state[k].copy_(v)  # BatchNorm statistics a training step moved
    return build_document(
        net, per_step, traffic, macs_fwd_bwd=macs_fwd_bwd, reference=reference, peaks=peaks, mode=mode,
        meta={"model": model or type(net).__name__, "alias": alias or model or type(net).__name__,
              "family": family, "img_size": int(x.shape[-1]), "batch_size": int(x.shape[0]),
              "dtype": prepared.options.dtype, "device": str(device),
              "clock": "CUDA kernel time of each op" if cuda else "CPU self time of each op"},
    )


def build_document(
    net: nn.Module,
    per_step: list[StepTimes],
    traffic: OpTraffic,
    *,
    macs_fwd_bwd: dict[str, int] | None,
    reference: dict[str, Any],
    peaks: dict[str, Any] | None,
    mode: str,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """Assemble the tree: own times -> subtree times, shares, FLOP/s and the roofline of each leaf."""
    chosen = _median_step(per_step)
    st = per_step[chosen]
    paths = module_paths(net)
    types = {p: type(m).__name__ for p, m in net.named_modules()}

    nodes: list[dict[str, Any]] = []

    def visit(path: str, mod: nn.Module, depth: int, parent: str | None) -> dict[str, float]:
        node: dict[str, Any] = {"path": path, "name": path.rsplit(".", 1)[-1] if path else meta["model"],
                                "type": type(mod).__name__, "depth": depth, "parent": parent}
        nodes.append(node)
        kids = [(f"{path}.{n}" if path else n, c) for n, c in mod.named_children()]
        kids = [(p, c) for p, c in kids if paths.get(id(c)) == p]
        sums = {"fwd": st.fwd.get(path, 0.0), "bwd": st.bwd.get(path, 0.0),
                "flops": float(traffic.flops.get(path, 0)), "bytes": float(traffic.bytes.get(path, 0))}
        for p, c in kids:
            sub = visit(p, c, depth + 1, path)
            for k in sums:
                sums[k] += sub[k]
        own_us = st.fwd.get(path, 0.0) + st.bwd.get(path, 0.0)
        node.update({
            "leaf": not kids,
            "layer_type": layer_type(path, types) if path else "other",
            "calls": traffic.module_calls.get(path, 0),
            "fwd_ms": sums["fwd"] / 1e3,
            "bwd_ms": sums["bwd"] / 1e3 if mode == "train" else None,
            "ms": (sums["fwd"] + sums["bwd"]) / 1e3,
            "own_ms": own_us / 1e3,
            "own_fwd_ms": st.fwd.get(path, 0.0) / 1e3,
            "flops": int(sums["flops"]),
            "macs": int(sums["flops"]) // 2,
            "bytes": int(sums["bytes"]),
            "own_flops": int(traffic.flops.get(path, 0)),
            "own_bytes": int(traffic.bytes.get(path, 0)),
            "own_ops": {op: us / 1e3 for op, us in sorted(st.own_ops.get(path, {}).items(), key=lambda kv: -kv[1])},
        })
        if macs_fwd_bwd is not None:
            node["macs_fwd_bwd"] = int(macs_fwd_bwd.get(path, 0))
        return sums

    visit("", net, 0, None)
    total_ms = nodes[0]["ms"] + (st.outside_fwd + st.outside_bwd) / 1e3
    total_macs = nodes[0]["macs"]
    for n in nodes:
        n["share_time"] = n["ms"] / total_ms if total_ms else 0.0
        n["share_macs"] = n["macs"] / total_macs if total_macs else 0.0
        work = n["macs_fwd_bwd"] * 2 if mode == "train" and "macs_fwd_bwd" in n else n["flops"]
        n["achieved_flops_per_s"] = work / (n["ms"] / 1e3) if n["ms"] > 0 and work else None
        n["roofline"] = None
        if n["leaf"] or n["own_flops"]:
            flops, nbytes = (n["flops"], n["bytes"]) if n["leaf"] else (n["own_flops"], n["own_bytes"])
            seconds = (n["fwd_ms"] if n["leaf"] else n["own_fwd_ms"]) / 1e3
            n["roofline"] = place(flops, nbytes, seconds, peaks)

    children = [n for n in nodes if n["parent"] == ""]
    children_ms = sum(n["ms"] for n in children)
    root_own_ms = nodes[0]["own_ms"]
    outside_ms = (st.outside_fwd + st.outside_bwd) / 1e3
    ops_ms = st.total_ops / 1e3
    p50 = float(reference["p50_ms"])
    by_type: dict[str, float] = dict.fromkeys(LAYER_TYPES, 0.0)
    for n in nodes:
        if n["path"] and n["leaf"]:
            by_type[n["layer_type"]] += n["ms"]
        elif n["own_ms"]:  # a container's own ops (the model's own forward code included)
            by_type[n["layer_type"] if n["layer_type"] in ("attention", "mlp", "embedding", "head") else "other"] += \
                n["own_ms"]
    totals = {
        "ops_ms": ops_ms,
        "children_ms": children_ms,
        "model_own_ops_ms": root_own_ms,
        "outside_model_ms": outside_ms,
        "python_in_modules_ms": st.module_python / 1e3,
        "python_outside_modules_ms": st.step_python / 1e3,
        "children_vs_p50": children_ms / p50 if p50 > 0 else None,
        "gap_ms": p50 - children_ms,
        "unattributed_ms": p50 - ops_ms,
        "within_tolerance": abs(children_ms / p50 - 1) <= CHILDREN_TOLERANCE if p50 > 0 else False,
        "tolerance": CHILDREN_TOLERANCE,
        "macs": total_macs,
        "flops": nodes[0]["flops"],
        "bytes": nodes[0]["bytes"],
        "steps_profiled": len(per_step),
        "step_used": chosen,
        "step_ops_ms": [s.total_ops / 1e3 for s in per_step],
    }
    if macs_fwd_bwd is not None:
        totals["macs_fwd_bwd"] = nodes[0].get("macs_fwd_bwd")
    return {
        "format": LAYERS_FORMAT,
        "version": LAYERS_VERSION,
        **meta,
        "mode": mode,
        "created_utc": utc_now(),
        "lvmharness": __version__,
        "torch_num_threads": torch.get_num_threads(),
        "reference": reference,
        "totals": totals,
        "peaks": peaks,
        "by_type": by_type,
        "nodes": nodes,
    }


def gap_explained(doc: dict[str, Any]) -> str:
    """One sentence: how the direct children's time compares with the measured p50, and where the gap goes."""
    t, ref = doc["totals"], doc["reference"]
    p50 = ref["p50_ms"]
    ratio = t["children_vs_p50"]
    verdict = "within" if t["within_tolerance"] else "NOT within"
    python_ms = t["python_in_modules_ms"] + t["python_outside_modules_ms"]
    return (f"direct children {t['children_ms']:.2f} ms = {ratio:.1%} of the measured p50 {p50:.2f} ms "
            f"({verdict} {t['tolerance']:.0%}); gap {t['gap_ms']:+.2f} ms = ops of the model's own forward "
            f"{t['model_own_ops_ms']:.2f} ms + ops outside the model {t['outside_model_ms']:.2f} ms + unattributed "
            f"{t['unattributed_ms']:.2f} ms (Python between ops {python_ms:.2f} ms "
            f"while profiled, dispatch and profiler overhead)")


def type_shares(doc: dict[str, Any]) -> dict[str, float]:
    """Share of the attributed module time per layer type."""
    total = sum(doc["by_type"].values())
    return {k: v / total if total else 0.0 for k, v in doc["by_type"].items()}


# --- front ends: the CLI, the page, the bench record ----------------------------------------------------------------


_PROBES = ProbeCache()  # a page server measuring many models probes once, like a bench run


def probe_peaks(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Both roofs of this device: the compute peak (the MFU denominator) and the copy bandwidth, probed once per
    process."""
    return dict(_PROBES.roofs(device, dtype))


def measure_from_spec(
    model: str,
    *,
    img_size: int | None = None,
    batch_size: int = 1,
    device: str = "cpu",
    dtype: str = "fp32",
    mode: str = "inference",
    steps: int = 5,
    warmup: int = 2,
    roofline: bool = True,
) -> dict[str, Any]:
    """Build a registry/timm model and measure its time per layer (what ``lvm layers`` runs)."""
    from lvmharness.models.build import create_model, resolve
    from lvmharness.runtime.devices import resolve_device
    from lvmharness.runtime.execution import ExecOptions

    if batch_size < 1:
        raise LayerTimingError(f"batch_size must be >= 1, got {batch_size}")
    spec = resolve(model)
    size = img_size or spec.default_img_size
    dev = resolve_device(device)
    refuse_mps(dev)  # before building the model there
    net = create_model(spec, img_size=size, device=dev)
    prepared = Prepared(net, dev, ExecOptions(dtype))
    x = prepared.make_input(batch_size, size)
    peaks = probe_peaks(dev, prepared.compute_dtype) if roofline else None
    return measure_layers(prepared, x, mode=mode, steps=steps, warmup=warmup, peaks=peaks, model=spec.timm_name,
                          alias=model, family=spec.family)


def page_file(doc: dict[str, Any]) -> str:
    """File name of a measurement in the page's ``layers/`` folder: ``<graph name>-<device>-<mode>.json``."""
    from lvmharness.formats.graph_format import graph_name

    device = str(doc["device"]).replace(":", "_")
    return f"{graph_name(doc['alias'], doc['img_size'], doc['batch_size'], doc['dtype'])}-{device}-{doc['mode']}.json"


def save_for_page(doc: dict[str, Any], graphs_dir: Path) -> Path:
    """Write the measurement into ``<graphs_dir>/layers/`` and the model's graph beside it if it is missing."""
    from lvmharness.formats.graph_format import graph_name
    from lvmharness.measure.graph import build_graph
    from lvmharness.store.results import atomic_write_json

    graphs_dir.mkdir(parents=True, exist_ok=True)
    graph_path = graphs_dir / f"{graph_name(doc['alias'], doc['img_size'], doc['batch_size'], doc['dtype'])}.json"
    if not graph_path.exists() and doc["dtype"] in ("fp32", "bf16", "fp16"):
        atomic_write_json(graph_path, build_graph(doc["alias"], img_size=doc["img_size"],
                                                  batch_size=doc["batch_size"], dtype=doc["dtype"]))
    path = graphs_dir / "layers" / page_file(doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, doc)
    return path


def record_values(doc: dict[str, Any]) -> dict[str, float | bool | None]:
    """The flat values of a ``layer_times`` record: totals, the children-vs-p50 check, time per layer type."""
    t = doc["totals"]
    values: dict[str, float | bool | None] = {
        "layers_children_ms": t["children_ms"],
        "layers_ops_ms": t["ops_ms"],
        "layers_model_own_ms": t["model_own_ops_ms"],
        "layers_outside_model_ms": t["outside_model_ms"],
        "layers_reference_p50_ms": float(doc["reference"]["p50_ms"]),
        "layers_children_vs_p50": t["children_vs_p50"],
        "layers_within_tolerance": bool(t["within_tolerance"]),
    }
    busy = doc["reference"].get("profiled_steps") or {}
    if busy:
        values["contended"] = bool(busy.get("contended") or doc["reference"].get("contended"))
        values["cpu_share"] = busy.get("cpu_share")
        values["other_load_cores"] = busy.get("other_load_cores")
    for kind, ms in doc["by_type"].items():
        values[f"layer_type_{kind}_ms"] = ms
    return values
