"""Two accountants of live tensor bytes over a step, and the per-module view of what autograd saves.

* ``LiveTensorBytes``: the predictor's own accountant, a ``TorchDispatchMode`` that follows the storage of every
  tensor an op returns until Python frees it. It keeps one running total and the breakdown at the peak, nothing
  per module: under ``FakeTensorMode`` a ViT-H step costs a few thousand dispatches, and the accounting must
  not cost more than they do.
* ``MemTrackerAccount``: PyTorch's ``MemTracker`` (``torch.distributed._tools.mem_tracker``) behind the same
  three calls. It is the measuring instrument: an independent implementation of the same bookkeeping, run on
  real tensors. (Run on fake tensors it gives the same numbers; it also snapshots every active module at each
  new peak, which costs O(ops x modules) -- 17 s of a 28 s ViT-H forward at 1022 px.)

Categories, both sides: those of :mod:`lvmharness.core.memory_categories` (what exists before the step, what a
storage first returned in each phase is, when a gradient becomes ``grads``). Storage
bytes are ``nbytes`` rounded up to the CUDA caching allocator's 512-byte block on CUDA (``kMinBlockSize`` in
c10/cuda/CUDACachingAllocator.cpp), exact elsewhere -- MemTracker's own rule.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from lvmharness.core.memory_categories import CATEGORIES, PHASE_CATEGORY

CUDA_MIN_BLOCK = 512
# MemTracker's reference types -> our categories. "Other" is what ``track_external`` files plain tensors under:
# here only the input batch and the labels, which a step holds like activations.
_MEMTRACKER_CATEGORY = {
    "Parameter": "params", "Buffer": "buffers", "Gradient": "grads", "Optstate": "optimizer_state",
    "Activation": "activations", "Other": "activations", "Temp": "temporaries",
}


def _optimizer_tensors(opt: torch.optim.Optimizer | None) -> list[torch.Tensor]:
    if opt is None:
        return []
    return [v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


class _Dispatch(TorchDispatchMode):
    def __init__(self, on_output: Callable[[torch.Tensor], None]) -> None:
        super().__init__()
        self.on_output = on_output

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.on_output(t)
        return out


class LiveTensorBytes:
    """Running total of live tensor storage bytes by category, with the peak and its breakdown."""

    def __init__(self, device: torch.device) -> None:
        self.round_to = CUDA_MIN_BLOCK if device.type == "cuda" else 1
        self.live: dict[int, tuple[Any, int, str]] = {}  # id(storage) -> (weakref, bytes, category)
        self.current = dict.fromkeys(CATEGORIES, 0)
        self.total = 0
        self.peak = 0
        self.peak_breakdown = dict(self.current)
        self.peak_phase = "start"
        self.phase_peaks: dict[str, int] = {}
        self._phase = "start"
        self._category = "activations"
        self._hooks: list[Any] = []

    # -- bookkeeping --
    def _bytes(self, st: torch.UntypedStorage) -> int:
        n = int(st.nbytes())
        return -(-n // self.round_to) * self.round_to

    def _freed(self, key: int, _ref: Any) -> None:
        entry = self.live.pop(key, None)
        if entry is not None:
            self.current[entry[2]] -= entry[1]
            self.total -= entry[1]

    def add(self, t: torch.Tensor, category: str | None = None) -> None:
        st = t.untyped_storage()
        key = id(st)
        entry = self.live.get(key)
        if entry is not None:
            size = self._bytes(st)
            if size != entry[1]:  # resized in place
                self.current[entry[2]] += size - entry[1]
                self.total += size - entry[1]
                self.live[key] = (entry[0], size, entry[2])
                self._check_peak()
            return
        cat = category or self._category
        size = self._bytes(st)
        self.live[key] = (weakref.ref(st, partial(self._freed, key)), size, cat)
        self.current[cat] += size
        self.total += size
        self._check_peak()

    def reclassify(self, t: torch.Tensor, category: str) -> None:
        key = id(t.untyped_storage())
        entry = self.live.get(key)
        if entry is None:
            self.add(t, category)
        elif entry[2] != category:
            self.current[entry[2]] -= entry[1]
            self.current[category] += entry[1]
            self.live[key] = (entry[0], entry[1], category)

    def _check_peak(self) -> None:
        if self.total > self.peak:
            self.peak = self.total
            self.peak_breakdown = dict(self.current)
            self.peak_phase = self._phase

    # -- the three calls a step makes --
    def track_start(self, model: torch.nn.Module, opt: torch.optim.Optimizer | None, *tensors: torch.Tensor) -> None:
        for p in model.parameters():
            self.add(p, "params")
            self._hooks.append(p.register_hook(lambda g: self.reclassify(g, "grads")))
            self._hooks.append(p.register_post_accumulate_grad_hook(
                lambda q: self.reclassify(q.grad, "grads") if q.grad is not None else None))
        for b in model.buffers():
            self.add(b, "buffers")
        for s in _optimizer_tensors(opt):
            self.add(s, "optimizer_state")
        for t in tensors:
            self.add(t, "activations")

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._phase, self._category = name, PHASE_CATEGORY[name]
        with _Dispatch(self.add):
            yield
        self.phase_peaks[name] = self.peak

    def finish(self) -> tuple[int, dict[str, int], str, dict[str, int]]:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        return self.peak, dict(self.peak_breakdown), self.peak_phase, dict(self.phase_peaks)


class MemTrackerAccount:
    """PyTorch's MemTracker behind the same calls: entered once around the whole step."""

    def __init__(self, device: torch.device) -> None:
        from torch.distributed._tools.mem_tracker import MemTracker

        self.tracker = MemTracker()
        self.phase_peaks: dict[str, int] = {}
        self._stack = contextlib.ExitStack()

    def track_start(self, model: torch.nn.Module, opt: torch.optim.Optimizer | None, *tensors: torch.Tensor) -> None:
        self.tracker.track_external(model, *([opt] if opt is not None else []), *tensors)
        self._stack.enter_context(self.tracker)

    def _peak(self) -> tuple[int, dict[str, int]]:
        total = 0
        cats = dict.fromkeys(CATEGORIES, 0)
        for dev_snap in self.tracker.get_tracker_snapshot("peak").values():
            for key, val in dev_snap.items():
                name = str(getattr(key, "value", key))
                if name == "Total":
                    total += int(val)
                else:
                    cats[_MEMTRACKER_CATEGORY[name]] += int(val)
        return total, cats

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        yield
        self.phase_peaks[name] = self._peak()[0]

    def finish(self) -> tuple[int, dict[str, int], str, dict[str, int]]:
        self._stack.close()
        total, cats = self._peak()
        # The phase whose end first shows the final peak is the phase that reached it.
        peak_phase = next((p for p, v in self.phase_peaks.items() if v == total), "start")
        return total, cats, peak_phase, dict(self.phase_peaks)


class _ModuleStack:
    """The innermost running module, by forward pre/post hooks: whom a tensor saved for backward belongs to."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.stack: list[str] = []
        self.handles: list[Any] = []
        for name, mod in model.named_modules():
            self.handles.append(mod.register_forward_pre_hook(partial(self._push, name)))
            self.handles.append(mod.register_forward_hook(self._pop))

    def _push(self, name: str, _mod: Any, _args: Any) -> None:
        self.stack.append(name)

    def _pop(self, _mod: Any, _args: Any, _out: Any) -> None:
        self.stack.pop()

    def current(self) -> str:
        return self.stack[-1] if self.stack else ""

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@contextlib.contextmanager
def saved_for_backward(model: torch.nn.Module, into: dict[str, int]) -> Iterator[None]:
    """Bytes autograd saves for backward during a forward, by the innermost module running when it saved them.

    A storage saved twice (a block's output saved by the next norm and by the residual add) is counted once, for
    the first saver; parameters and buffers are weights, not activations, and are left out. For the per-layer
    view only, never inside a measured step: a pack hook holds what it packs until the graph is freed, which
    moves the peak.
    """
    stack = _ModuleStack(model)
    weights = {id(t.untyped_storage()) for t in (*model.parameters(), *model.buffers())}
    seen: dict[int, Any] = {}  # id -> storage: holding it keeps the id from being reused during the forward

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        key = id(st)
        if key not in weights and key not in seen:
            seen[key] = st
            where = stack.current()
            into[where] = into.get(where, 0) + int(st.nbytes())
        return t

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield
    finally:
        stack.remove()
