"""Which aten ops carry multiply-adds, and the MAC formulas torch's ``FlopCounterMode`` table lacks.

Each formula takes shapes (``FlopCounterMode`` replaces tensors by their shapes) and returns FLOPs, i.e. 2 per
multiply-accumulate, the convention of torch's own table. Adding an op is one entry in :data:`EXTRA_FORMULAS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import bmm_flop, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten


def _sdpa_cpu(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return int(sdpa_flop_count(query, key, value))


def _sdpa_backward(grad_out: Any, query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None,
                   **kwargs: Any) -> int:
    """Gradients of QKᵀ and AV (4 matmuls = 2 × forward). torch's own formula adds the recomputation of QKᵀ that
    flash kernels do; we leave it out so a training step counts the same on every device and kernel."""
    b, h, lq, d = query
    recompute = bmm_flop((b * h, lq, d), (b * h, d, key[2]))
    return int(sdpa_backward_flop_count(grad_out, query, key, value) - recompute)


def _native_mha(query: Any, key: Any, value: Any, embed_dim: int, num_heads: int, *args: Any,
                out_shape: Any = None, **kwargs: Any) -> int:
    """``nn.MultiheadAttention`` fast path: in-projections, QKᵀ, AV and the out-projection, fused in one op."""
    b, lq, e = query[0], query[1], embed_dim
    lk = key[1]
    macs = b * lq * e * e + 2 * b * lk * e * e  # q, k, v projections
    macs += 2 * b * lq * lk * e  # QKᵀ and AV over all heads
    macs += b * lq * e * e  # out-projection
    return 2 * macs


def _mv(mat: Any, vec: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return 2 * mat[0] * mat[1]


def _addmv(bias: Any, mat: Any, vec: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return 2 * mat[0] * mat[1]


def _dot(a: Any, b: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return 2 * a[0]


def _addbmm(bias: Any, b1: Any, b2: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return int(bmm_flop(b1, b2))


# --- recurrent layers. A fused RNN kernel (oneDNN's ``mkldnn_rnn_layer`` on CPU, ``_cudnn_rnn`` on CUDA,
# ``miopen_rnn`` on ROCm) runs the whole sequence in one op. Every step multiplies the step's input by W_ih
# (gates*H x I) and the hidden state by W_hh (gates*H x H) -- and, for an LSTM with ``proj_size``, the new hidden
# state by W_hr (P x H) -- so the MACs are (time steps x batch) x the elements of every 2-D weight matrix; the
# gates' sigmoid/tanh and products are elementwise, not MACs. Backward computes the gradients of the inputs, the
# hidden states and the weights: two matmuls the size of each forward one, 2 x forward (as for linear layers).


def _rnn_tokens(inp: Any) -> int:
    """Time steps x batch: (T, B, I) or (B, T, I) padded, or (sum of batch sizes, I) packed."""
    return int(inp[0] * inp[1]) if len(inp) == 3 else int(inp[0])


def _matrix_elements(shapes: Any) -> int:
    return sum(int(s[0] * s[1]) for s in shapes if isinstance(s, tuple | list | torch.Size) and len(s) == 2)


def _mkldnn_rnn_layer(inp: Any, w_ih: Any, w_hh: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return 2 * _rnn_tokens(inp) * _matrix_elements([w_ih, w_hh])


def _mkldnn_rnn_layer_backward(inp: Any, w_ih: Any, w_hh: Any, *args: Any, out_shape: Any = None,
                               **kwargs: Any) -> int:
    return 2 * _mkldnn_rnn_layer(inp, w_ih, w_hh)


def _fused_rnn(inp: Any, weights: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """``_cudnn_rnn`` / ``miopen_rnn``: ``weights`` lists every layer's and direction's matrices (and biases)."""
    return 2 * _rnn_tokens(inp) * _matrix_elements(weights)


def _fused_rnn_backward(inp: Any, weights: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return 2 * _fused_rnn(inp, weights)


def _rnn_module_op(inp: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """``aten.lstm/gru/rnn_tanh/rnn_relu`` when a backend takes them whole: ``.input`` overloads pass
    (input, hx, params, ...), ``.data`` overloads (data, batch_sizes, hx, params, ...); the params list is the
    one holding 2-D matrices (the hidden states are 3-D)."""
    weights = next((a for a in args if isinstance(a, list | tuple) and _matrix_elements(a)), [])
    return 2 * _rnn_tokens(inp) * _matrix_elements(weights)


def _no_macs(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """Recurrent-cell kernels given gates computed by separate (counted) matmuls, and weight flattening: the
    sigmoid/tanh/products of the gates, or a copy, carry no multiply-adds."""
    return 0


EXTRA_FORMULAS: dict[Any, Callable[..., int]] = {
    aten.mkldnn_rnn_layer: _mkldnn_rnn_layer,
    aten.mkldnn_rnn_layer_backward: _mkldnn_rnn_layer_backward,
    aten._cudnn_rnn: _fused_rnn,
    aten._cudnn_rnn_backward: _fused_rnn_backward,
    aten.miopen_rnn: _fused_rnn,
    aten.miopen_rnn_backward: _fused_rnn_backward,
    aten.lstm: _rnn_module_op,
    aten.gru: _rnn_module_op,
    aten.rnn_tanh: _rnn_module_op,
    aten.rnn_relu: _rnn_module_op,
    aten._thnn_fused_lstm_cell: _no_macs,
    aten._thnn_fused_lstm_cell_backward_impl: _no_macs,
    aten._thnn_fused_gru_cell: _no_macs,
    aten._thnn_fused_gru_cell_backward: _no_macs,
    aten._cudnn_rnn_flatten_weight: _no_macs,
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward,
    aten._scaled_dot_product_flash_attention_backward: _sdpa_backward,
    aten._scaled_dot_product_efficient_attention_backward: _sdpa_backward,
    aten._scaled_dot_product_cudnn_attention_backward: _sdpa_backward,
    aten._scaled_dot_product_fused_attention_overrideable_backward: _sdpa_backward,
    aten._scaled_dot_product_fused_attention_overrideable: _sdpa_cpu,
    aten._scaled_dot_product_attention_math_for_mps: _sdpa_cpu,
    aten._native_multi_head_attention: _native_mha,
    aten.mv: _mv,
    aten.addmv: _addmv,
    aten.dot: _dot,
    aten.vdot: _dot,
    aten.addbmm: _addbmm,
}

# aten op names (without namespace/overload) that can carry multiply-adds. Seeing one without a formula fails.
_MAC_OP = re.compile(
    r"_*("
    r"\w*convolution\w*|(cudnn_|mkldnn_|miopen_|slow_|thnn_)?conv(\d?d|_tbc|_transpose\dd|_depthwise\dd)(_\w+)?"
    r"|\w*mm(_\w+)?|matmul\w*|(mkldnn_)?linear\w*|einsum|tensordot|(add)?mv|v?dot"
    r"|\w*attention\w*|transformer_encoder_layer_fwd|\w*cdist\w*|addr|ger|outer|kron|chain_matmul|bilinear"
    r"|\w*lstm\w*|\w*gru\w*|\w*rnn\w*"  # recurrent layers: a fused kernel runs a whole sequence of matmuls
    r")"
)


def carries_macs(op_name: str) -> bool:
    """``aten.addmm`` / ``aten::addmm`` / ``addmm.default`` -> True; norms, adds, views -> False."""
    base = op_name.split("::")[-1].split(".")
    name = base[1] if len(base) > 1 and base[0] == "aten" else base[0]
    return _MAC_OP.fullmatch(name) is not None
