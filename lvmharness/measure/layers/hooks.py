"""Which module issued what: forward hooks around every module call of a model.

Two uses: a ``lvm.module::<path>`` profiler range per call (the timed pass reads op times under it), and a stack of
the module paths in progress (the FLOPs-and-bytes pass reads the innermost one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

MODULE_RANGE = "lvm.module::"


def module_paths(net: nn.Module) -> dict[int, str]:
    """id(module) -> its first path in ``named_modules`` order (a shared module is reported where it first sits)."""
    return {id(m): p for p, m in reversed(list(net.named_modules()))}


@contextlib.contextmanager
def every_call(net: nn.Module, pre: Callable[[nn.Module, Any], None],
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

    with every_call(net, pre, post):
        yield


@contextlib.contextmanager
def path_stack(net: nn.Module, stack: list[str], calls: dict[str, int]) -> Iterator[None]:
    """Keep ``stack`` equal to the paths of the module calls in progress (innermost last); count the calls."""
    paths = module_paths(net)

    def pre(mod: nn.Module, args: Any) -> None:
        stack.append(paths[id(mod)])
        calls[stack[-1]] += 1

    def post(mod: nn.Module, args: Any, out: Any) -> None:
        stack.pop()

    with every_call(net, pre, post):
        yield
