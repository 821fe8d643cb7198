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

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from lvmharness.core.errors import ConfigError, UserError
from lvmharness.core.stats import loglog_slope
from lvmharness.measure.flop_formulas import EXTRA_FORMULAS, carries_macs
from lvmharness.measure.flop_fvcore import fvcore_breakdown, fvcore_default_count, fvcore_macs
from lvmharness.models.build import count_params, create_model, resolve

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
            "count that would be too small; add a formula for each to EXTRA_FORMULAS in "
            "lvmharness/measure/flop_formulas.py"
        )


class CounterDisagreementError(FlopCountError):
    pass


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


def macs_scaling(model: str, sizes: Sequence[int]) -> dict[str, Any]:
    """Forward MACs of one image at each input side and the exponent k of MACs ~ pixels^k."""
    per_size = [analyze(model, img_size=s, batch_size=1, backward=False).macs for s in sizes]
    return {"img_sizes": list(sizes), "macs": per_size, "exponent_vs_pixels": scaling_exponent(sizes, per_size)}


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
