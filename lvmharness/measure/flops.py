"""Counting multiply-accumulates, exactly.

Units: ``macs`` = multiply-accumulates (what vision papers call "FLOPs"); ``flops`` = 2 × ``macs``. Only the ops
that carry multiply-adds are counted — convolution, linear/addmm/mm, bmm/baddbmm/matmul/einsum and attention in
every kernel form — as in the published tables (torchvision's model documentation, whose "GFLOPS" column is
multiply-adds; the DeiT paper, Touvron et al. 2021, Table 1; the Swin paper, Liu et al. 2021, Table 1). Norms,
activations, pooling and adds are not MACs and are not counted.

Primary counter: ``torch.utils.flop_counter.FlopCounterMode`` plus :data:`EXTRA_FORMULAS` for the kernels it
misses (the CPU flash-attention kernel, ``nn.MultiheadAttention``'s fast path, mv/dot/addbmm). Adding an op is one
entry in that table. An auditing dispatch mode sees every aten op that runs; one that can carry multiply-adds
and has no formula makes the count fail (:class:`UncountedOpError`) instead of printing a smaller number.

Second counter: fvcore's ``FlopCountAnalysis`` (JIT trace on CPU) restricted to the same op set, with a handle
for ``aten::scaled_dot_product_attention`` (which fvcore skips). The two must agree within
:data:`AGREEMENT_TOLERANCE`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import (
    FlopCounterMode,
    bmm_flop,
    flop_registry,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from lvmharness.core.errors import UserError
from lvmharness.core.stats import loglog_slope

aten = torch.ops.aten

# Relative. Both counters count the same op set exactly, so they differ only when one misses or miscounts an op;
# 0.1 % is below the misses that matter: one ViT-B/16 block's attention matmuls alone are 2 x 197^2 x 768 =
# 59.6 M MACs, 0.34 % of its 17.56 G.
AGREEMENT_TOLERANCE = 1e-3
PRIMARY_COUNTER = "torch.utils.flop_counter.FlopCounterMode + lvmharness formulas"
SECOND_COUNTER = "fvcore.nn.FlopCountAnalysis + lvmharness sdpa handle"


class FlopCountError(UserError, RuntimeError):
    """A count that cannot be trusted; the message says why and what to do."""


class UncountedOpError(FlopCountError):
    def __init__(self, ops: dict[str, int]) -> None:
        self.ops = ops
        names = ", ".join(f"{op} (x{n})" for op, n in sorted(ops.items()))
        super().__init__(
            f"the model ran ops that carry multiply-adds but have no MAC formula: {names}. Refusing to report a "
            "count that would be too small; add a formula for each to EXTRA_FORMULAS in lvmharness/measure/flops.py"
        )


class CounterDisagreementError(FlopCountError):
    pass


# --- formulas FlopCounterMode lacks. Each takes shapes (tensors are replaced by their shapes) and returns FLOPs,
# --- i.e. 2 per multiply-accumulate, the convention of torch's own table.


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


def _formulas() -> dict[Any, Any]:
    return {**flop_registry, **EXTRA_FORMULAS}


class _OpAudit(TorchDispatchMode):
    """Records every aten op that runs, to find MAC-carrying ops that no formula covers."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[Any] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        self.seen[func._overloadpacket] += 1
        return func(*args, **(kwargs or {}))


@dataclass
class OpCounts:
    """MACs from one counted run: the total, per op and per module path (subtree, '' = the model)."""

    macs: int
    by_op: dict[str, int]
    by_module: dict[str, dict[str, int]]  # module path -> op -> MACs of that subtree
    uncounted_ops: dict[str, int]


def count_run(model: torch.nn.Module, run: Callable[[], Any], *, strict: bool = True) -> OpCounts:
    """Count the MACs of whatever ``run`` executes on ``model`` (forward, or forward + backward)."""
    formulas = _formulas()
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)
    audit = _OpAudit()
    with counter, audit:
        run()
    uncounted = {str(op): n for op, n in audit.seen.items() if op not in formulas and carries_macs(str(op))}
    if uncounted and strict:
        raise UncountedOpError(uncounted)
    raw = counter.get_flop_counts()
    root = type(model).__name__
    by_module: dict[str, dict[str, int]] = {}
    for name, ops in raw.items():
        if name == "Global":
            continue
        path = "" if name == root else name[len(root) + 1 :] if name.startswith(root + ".") else None
        if path is None:
            continue
        by_module[path] = {str(op): int(v) // 2 for op, v in ops.items()}
    by_op = {str(op): int(v) // 2 for op, v in raw.get("Global", {}).items()}
    return OpCounts(sum(by_op.values()), by_op, by_module, uncounted)


def forward_macs(model: torch.nn.Module, x: torch.Tensor, *, strict: bool = True) -> OpCounts:
    model.eval()

    def run() -> None:
        with torch.no_grad():
            model(x)

    # FlopCounterMode's module tracker hooks the backward of every module input that requires grad; under
    # no_grad a view of a parameter (a class token expanded to the batch: PiT, CaiT) requires grad and has no
    # grad_fn, and the hook fails. Gradients play no part in a forward's MACs: count with them switched off.
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        return count_run(model, run, strict=strict)
    finally:
        for p in frozen:
            p.requires_grad_(True)


def forward_backward_macs(model: torch.nn.Module, x: torch.Tensor, *, strict: bool = True) -> OpCounts:
    """One training step's multiply-adds: forward plus backward to every parameter.

    The input needs no gradient, so the first layer's input-gradient is (correctly) not counted. The model stays
    in eval mode: train mode changes no conv/linear/attention MAC, and eval lets BatchNorm take a 1x1 batch of 1.
    """
    model.eval()

    def run() -> None:
        with torch.enable_grad():
            out = model(x)
            out.float().sum().backward()

    try:
        return count_run(model, run, strict=strict)
    finally:
        model.zero_grad(set_to_none=True)


# --- fvcore, the second counter ---------------------------------------------------------------------------------

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


# --- counting conventions ---------------------------------------------------------------------------------------
#
# Published numbers differ by convention, not by error; each one is named, recorded, and can be asked for:
#   macs         multiply-adds of conv/linear/matmul/attention/recurrent ops (the default; the papers' "FLOPs",
#                torchvision's "GFLOPS" column) and every parameter the model holds;
#   fvcore       fvcore's ``FlopCountAnalysis`` with its default handles, as timm's published benchmark tables
#                count (``infer_gmacs`` in timm's results/benchmark-infer-*.csv): the multiply-adds plus one per
#                element for batch norm in eval, 5 per element for affine group/layer norm, 1 per input element for
#                adaptive average pooling, 1 or 4 per output element for upsampling and grid sampling (fvcore's
#                ``_DEFAULT_SUPPORTED_OPS``), plus this module's handle for scaled-dot-product attention, which
#                fvcore lacks and timm's table includes (vit_base_patch16_224: 17.58 G). Counted on the CPU with
#                real tensors (fvcore traces with the JIT); the difference from ``macs`` is broken down by op;
#   deploy       the model re-parameterised for inference first (``timm.utils.reparameterize_model``: RepVGG,
#                MobileOne, FastViT, LeViT fuse branches and norms into one conv), as timm's table counts those;
#                refused for a model with no such form;
#   eval_params  parameters of the modules that run in an eval forward only (torchvision's googlenet and
#                inception_v3 ``num_params`` leave out the auxiliary classifiers that ``weights=None`` builds).
# ``fvcore`` and ``macs`` are alternatives; ``deploy`` and ``eval_params`` combine with either
# (``fvcore,deploy`` is timm's table for the re-parameterisable families).

CONVENTIONS = ("macs", "fvcore", "deploy", "eval_params")
DEFAULT_CONVENTION = "macs"


def parse_convention(text: str) -> tuple[str, ...]:
    """``"fvcore,deploy"`` -> ("fvcore", "deploy"), in a canonical order; unknown or contradictory -> UserError."""
    from lvmharness.core.errors import ConfigError

    names = [t.strip().replace("-", "_") for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in CONVENTIONS]
    if not names or unknown:
        raise ConfigError(f"counting convention {text!r}: valid names are {', '.join(CONVENTIONS)} "
                          "(comma-separated, e.g. fvcore,deploy)", field="convention")
    if "macs" in names and "fvcore" in names:
        raise ConfigError(f"counting convention {text!r}: macs and fvcore are alternatives; choose one",
                          field="convention")
    chosen = set(names)
    if "fvcore" not in chosen:
        chosen.add("macs")
    return tuple(c for c in CONVENTIONS if c in chosen)


class NoDeployFormError(FlopCountError):
    pass


_DEPLOY_METHODS = ("fuse", "reparameterize", "switch_to_deploy")


def deploy_form(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """timm's inference form (branches and norms fused), or NoDeployFormError when the model has none."""
    from timm.utils.model import reparameterize_model

    if not any(hasattr(m, meth) for m in model.modules() for meth in _DEPLOY_METHODS):
        raise NoDeployFormError(
            f"{name} has no deploy (re-parameterised) form: none of its modules defines "
            f"{', '.join(_DEPLOY_METHODS)}; count it without the deploy convention")
    model.eval()
    where = next((p.device for p in model.parameters()), torch.device("cpu"))
    # The fused modules are created inside reparameterize(): on the model's device, so that a model on meta
    # gets meta replacements (timm creates them on the default device and copies the fused kernel into them).
    with torch.no_grad(), where:
        return reparameterize_model(model, inplace=True)


def eval_param_count(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Parameters (each once) of the modules that run in one eval forward of ``x``."""
    ran: list[torch.nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda mod, _args: ran.append(mod)) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    seen: dict[int, int] = {}
    for mod in ran:
        for p in mod.parameters(recurse=False):
            seen[id(p)] = p.numel()
    return sum(seen.values())


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


# --- the analysis users call ------------------------------------------------------------------------------------


@dataclass
class FlopReport:
    model: str
    alias: str
    img_size: int
    batch_size: int
    params: int
    macs: int  # forward, whole batch
    macs_fwd_bwd: int | None
    by_op: dict[str, int]
    by_module: dict[str, dict[str, int]]
    counter: str = PRIMARY_COUNTER
    device: str = "meta"
    uncounted_ops: dict[str, int] = field(default_factory=dict)
    verified_by: dict[str, Any] | None = None
    convention: str = DEFAULT_CONVENTION  # see CONVENTIONS; names what ``macs`` and ``params`` count
    convention_detail: dict[str, Any] = field(default_factory=dict)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def flops_fwd_bwd(self) -> int | None:
        return None if self.macs_fwd_bwd is None else 2 * self.macs_fwd_bwd

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "alias": self.alias,
            "img_size": self.img_size,
            "batch_size": self.batch_size,
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "macs_fwd_bwd": self.macs_fwd_bwd,
            "flops_fwd_bwd": self.flops_fwd_bwd,
            "gmacs_per_image": self.macs / self.batch_size / 1e9,
            "counter": self.counter,
            "device": self.device,
            "uncounted_ops": self.uncounted_ops,
            "macs_by_op": self.by_op,
            "verified_by": self.verified_by,
            "convention": self.convention,
            **({"convention_detail": self.convention_detail} if self.convention_detail else {}),
        }


def verify_with_fvcore(model_name: str, img_size: int, batch_size: int, macs: int) -> dict[str, Any]:
    """Count again with fvcore on CPU (real weights) and fail loudly on any disagreement above 0.1 %."""
    from lvmharness.models.build import create_model

    net = create_model(model_name, img_size=img_size, device="cpu").eval()
    x = torch.randn(batch_size, 3, img_size, img_size)
    second, missing = fvcore_macs(net, x)
    rel = abs(second - macs) / macs if macs else float(second != 0)
    info = {"counter": SECOND_COUNTER, "macs": second, "rel_diff": rel, "uncounted_ops": missing}
    if missing:
        raise CounterDisagreementError(
            f"fvcore could not count MAC-carrying ops {sorted(missing)} for {model_name}; cannot verify"
        )
    if rel > AGREEMENT_TOLERANCE:
        raise CounterDisagreementError(
            f"{model_name} at {img_size}px: FlopCounterMode says {macs} MACs, fvcore says {second} "
            f"({rel:.4%} apart, tolerance {AGREEMENT_TOLERANCE:.1%}); one of them misses an op — not reporting either"
        )
    return info


def analyze(
    model: str,
    *,
    img_size: int | None = None,
    batch_size: int = 1,
    backward: bool = True,
    verify: bool = False,
    device: str = "meta",
    convention: str = DEFAULT_CONVENTION,
) -> FlopReport:
    """Params and MACs (forward, and forward+backward) of a registry/timm model, on ``meta`` by default:
    no weights or activations are allocated, so even ViT-H answers in seconds and little memory.

    ``convention`` (see :data:`CONVENTIONS`) names what is counted; the default is the multiply-adds."""
    from lvmharness.models.build import count_params, create_model, resolve

    conv = parse_convention(convention)
    spec = resolve(model)
    size = img_size or spec.default_img_size
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    net = create_model(spec, img_size=size, device=device)
    if "deploy" in conv:
        net = deploy_form(net, model)
    x = torch.empty(batch_size, 3, size, size, device=device)
    if device != "meta":
        x.normal_()
    fwd = forward_macs(net, x)
    bwd = forward_backward_macs(net, x).macs if backward else None
    params = count_params(net)
    detail: dict[str, Any] = {}
    if "eval_params" in conv:
        detail["params_all"] = params
        params = eval_param_count(net, x)
    report = FlopReport(
        model=spec.timm_name, alias=model, img_size=size, batch_size=batch_size, params=params,
        macs=fwd.macs, macs_fwd_bwd=bwd, by_op=fwd.by_op, by_module=fwd.by_module, device=device,
        uncounted_ops=fwd.uncounted_ops, convention=",".join(conv),
    )
    if verify:
        report.verified_by = verify_with_fvcore(model, size, batch_size, fwd.macs)
    if "fvcore" in conv:
        # fvcore traces real tensors: the same model (and deploy form) again on the CPU.
        cpu_net = create_model(spec, img_size=size, device="cpu")
        if "deploy" in conv:
            cpu_net = deploy_form(cpu_net, model)
        total, by_op = fvcore_default_count(cpu_net, torch.randn(batch_size, 3, size, size))
        detail.update(multiply_adds=fwd.macs, fvcore_by_op=by_op,
                      difference_by_op=fvcore_breakdown(by_op, fwd.macs))
        report.macs, report.macs_fwd_bwd, report.counter = total, None, "fvcore.nn.FlopCountAnalysis default handles"
        report.by_op = by_op
    report.convention_detail = detail
    return report


def scaling_exponent(sizes: Sequence[int], macs: Sequence[int]) -> float:
    """Least-squares slope of log(MACs) against log(pixels) (∝ tokens for a fixed patch).

    1.0 = linear in pixels (CNNs, windowed attention); → 2.0 as global attention dominates.
    """
    if len(sizes) != len(macs) or len(sizes) < 2:
        raise ValueError("need at least two (size, macs) pairs")
    slope = loglog_slope((s * s, m) for s, m in zip(sizes, macs, strict=True))
    if slope is None:
        raise ValueError("need at least two distinct sizes")
    return slope


def module_table(report: FlopReport, *, depth: int = 2, top: int = 15) -> list[tuple[str, int, float]]:
    """(module path, subtree MACs, share of total) for modules at most ``depth`` deep, largest first."""
    rows = []
    for path, ops in report.by_module.items():
        if not path or path.count(".") + 1 > depth:
            continue
        macs = sum(ops.values())
        if macs:
            rows.append((path, macs, macs / report.macs if report.macs else 0.0))
    rows.sort(key=lambda r: -r[1])
    return rows[:top]
