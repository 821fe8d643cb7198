"""fvcore's ``FlopCountAnalysis``: the second counter (restricted to the MAC-carrying ops) and the ``fvcore``
counting convention (its default handles, as timm's published tables count). Both trace with the JIT: CPU tensors.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lvmharness.measure.flop_formulas import carries_macs


def _fvcore_sdpa(inputs: list[Any], outputs: list[Any]) -> int:
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(i) for i in inputs[:3])
    batch = math.prod(q[:-2])
    lq, d = q[-2], q[-1]
    lk, dv = k[-2], v[-1]
    return int(batch * lq * lk * d + batch * lq * lk * dv)


def fvcore_macs(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, dict[str, int]]:
    """(MACs, MAC-carrying ops fvcore could not count). Traces with real tensors: use CPU, not meta."""
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn import jit_handles as jh

    model.eval()
    fca = FlopCountAnalysis(model, (x,))
    # Only the MAC-carrying ops of the published tables: fvcore's defaults also count norms, pooling, upsampling.
    fca.clear_op_handles()
    fca.set_op_handle(
        "aten::addmm", jh.addmm_flop_jit,
        "aten::bmm", jh.bmm_flop_jit,
        "aten::mm", jh.matmul_flop_jit,
        "aten::matmul", jh.matmul_flop_jit,
        "aten::linear", jh.linear_flop_jit,
        "aten::einsum", jh.einsum_flop_jit,
        "aten::_convolution", jh.conv_flop_jit,
        "aten::scaled_dot_product_attention", _fvcore_sdpa,
    )
    fca.unsupported_ops_warnings(False)
    fca.uncalled_modules_warnings(False)
    fca.tracer_warnings("none")
    total = int(fca.total())
    missing = {op: n for op, n in fca.unsupported_ops().items() if carries_macs(op)}
    return total, missing


# fvcore's handles for the ops that carry multiply-adds (the rest of its defaults count other work).
_FVCORE_MAC_OPS = ("addmm", "bmm", "conv", "einsum", "matmul", "mm", "linear", "scaled_dot_product_attention")


def fvcore_default_count(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, dict[str, int]]:
    """(total, by op) of fvcore's FlopCountAnalysis with its default handles plus an sdpa handle; CPU tensors."""
    from fvcore.nn import FlopCountAnalysis

    model.eval()
    fca = FlopCountAnalysis(model, (x,))
    fca.set_op_handle("aten::scaled_dot_product_attention", _fvcore_sdpa)
    fca.unsupported_ops_warnings(False)
    fca.uncalled_modules_warnings(False)
    fca.tracer_warnings("none")
    return int(fca.total()), {str(k): int(v) for k, v in fca.by_operator().items() if v}


def fvcore_breakdown(fvcore_by_op: dict[str, int], macs: int) -> dict[str, int]:
    """How fvcore's default count differs from the multiply-adds: its count of each non-MAC op, and
    ``multiply_adds_counted_differently`` (fvcore's MAC-op total minus ours; 0 when both see the same ops)."""
    mac_ops = sum(v for k, v in fvcore_by_op.items() if k in _FVCORE_MAC_OPS)
    out = {k: v for k, v in sorted(fvcore_by_op.items()) if k not in _FVCORE_MAC_OPS}
    out["multiply_adds_counted_differently"] = mac_ops - macs
    return out
