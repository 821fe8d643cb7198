"""FLOPs and bytes per module, from one forward under a dispatch mode.

FLOPs are the MAC counter's (2 per multiply-accumulate: torch's ``FlopCounterMode`` table plus
:data:`lvmharness.measure.flop_formulas.EXTRA_FORMULAS`); bytes are what every aten op reads and writes, from
shapes and dtypes (views move nothing).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from lvmharness.measure.flop_formulas import EXTRA_FORMULAS, carries_macs
from lvmharness.measure.flops import UncountedOpError
from lvmharness.measure.layers.hooks import path_stack

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
    with path_stack(net, stack, traffic.module_calls), mode:
        run()
    if mode.uncounted:
        raise UncountedOpError(dict(mode.uncounted))
    return traffic
