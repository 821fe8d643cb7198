"""One step whose peak memory is predicted or measured, and the code that runs it under an accountant.

The quantity is defined in :mod:`lvmharness.measure.prediction`. The same functions run on fake tensors
(prediction) and on real ones (measurement): that is what makes the two numbers the same quantity.
torch is imported inside the functions: ``StepConfig`` and the vocabularies serve ``lvm memory --help`` and the
page's form, which start without torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lvmharness.core.errors import BadValueError
from lvmharness.core.vocab import DTYPE_NAMES

if TYPE_CHECKING:
    import torch

MODES = ("inference", "train")
OPTIMIZERS = ("adamw", "sgd")
# Hyper-parameters of the optimizers (they do not change the memory, but a record should say what ran).
ADAMW_ARGS = {"lr": 1e-4, "weight_decay": 0.05}
SGD_ARGS = {"lr": 0.1, "momentum": 0.9}  # momentum > 0: one buffer per parameter, created by the first step
NUM_LABELS = 1000


@dataclass(frozen=True)
class StepConfig:
    """One step whose peak is predicted or measured; every field changes the number."""

    model: str
    batch_size: int = 1
    img_size: int | None = None  # None: the model's default size
    mode: str = "train"
    dtype: str = "fp32"  # fp32 | bf16 | fp16 (weights and input) | amp_bf16 | amp_fp16 (fp32 weights, autocast)
    optimizer: str = "adamw"
    channels_last: bool = False
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise BadValueError(f"mode {self.mode!r}: valid modes are {', '.join(MODES)}")
        if self.optimizer not in OPTIMIZERS:
            raise BadValueError(f"optimizer {self.optimizer!r}: valid optimizers are {', '.join(OPTIMIZERS)}")
        if self.dtype not in DTYPE_NAMES:
            raise BadValueError(f"dtype {self.dtype!r}: valid dtypes are {', '.join(DTYPE_NAMES)}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise BadValueError(f"batch size must be a whole number >= 1, got {self.batch_size!r}")
        if self.img_size is not None and self.img_size < 1:
            raise BadValueError(f"img_size must be >= 1, got {self.img_size}")

    def quantity(self) -> str:
        """The measured quantity a prediction for this config aims at, in words."""
        n = self.img_size if self.img_size is not None else "N"
        what = (f"MemTracker peak of live tensor bytes over one {self.mode} step of {self.model}, "
                f"batch {self.batch_size}, {n} px, {self.dtype}")
        if self.channels_last:
            what += ", channels_last"
        if self.mode == "inference":
            return what + ": eval(), one forward under torch.no_grad()"
        opt = "AdamW" if self.optimizer == "adamw" else "SGD(momentum=0.9)"
        return (what + f": train(), the step after the first: forward, cross-entropy on integer labels, "
                       f"backward, {opt}.step(), zero_grad(set_to_none=True)")


@dataclass
class StepMemory:
    """What one tracked step held at its peak."""

    peak_bytes: int
    breakdown: dict[str, int]  # category -> bytes at the moment of the peak (sums to peak_bytes)
    peak_phase: str  # forward | backward | optimizer_step | zero_grad: the phase during which the peak was reached
    phase_peaks: dict[str, int]  # running peak at the end of each phase
    saved_for_backward: dict[str, int] = field(default_factory=dict)  # module path -> bytes (train only)
    img_size: int = 0
    params: int = 0  # number of parameters (elements)
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the step -----------------------------------------------------------------------------------------------------


def dtype_mode(cfg: StepConfig) -> tuple[torch.dtype, torch.dtype | None]:
    import torch

    from lvmharness.runtime.execution import check_dtype_mode

    return check_dtype_mode(cfg.dtype, torch.device(cfg.device))


def target_device(cfg: StepConfig) -> torch.device:
    from lvmharness.runtime.devices import resolve_device

    return resolve_device(cfg.device)


def optimizer_foreach(device: torch.device) -> bool:
    """Whether torch's default picks the multi-tensor (``foreach``) optimizer kernels for real parameters on
    ``device``: ``_default_to_fused_or_foreach`` in torch/optim/optimizer.py says yes when every parameter is a
    plain Tensor or nn.Parameter on a device of ``_get_foreach_kernels_supported_devices()`` (cuda, xpu, ... not
    cpu). Fake parameters are ``FakeTensor``, which fails that type test, so left to the default a prediction for
    CUDA would model the single-tensor AdamW while the real step runs ``_multi_tensor_adamw``, which holds
    weights-sized temporaries (torch/optim/adamw.py). Both sides pass this choice explicitly."""
    from torch.optim import optimizer as torch_optimizer

    return device.type in torch_optimizer._get_foreach_kernels_supported_devices()


def _make_optimizer(cfg: StepConfig, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    import torch

    foreach = optimizer_foreach(device)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), foreach=foreach, **ADAMW_ARGS)  # type: ignore[arg-type]
    return torch.optim.SGD(model.parameters(), foreach=foreach, **SGD_ARGS)  # type: ignore[arg-type]


def build_inputs(cfg: StepConfig, size: int, device: torch.device, dtype: torch.dtype,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(cfg.batch_size, 3, size, size, generator=gen).to(device=device, dtype=dtype)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_LABELS, (cfg.batch_size,), generator=gen).to(device)
    return x, y


def _parameters_reached(loss: torch.Tensor) -> set[int]:
    """ids of the leaf tensors a backward from ``loss`` would give a gradient: its AccumulateGrad nodes."""
    reached: set[int] = set()
    seen: set[Any] = set()
    stack = [loss.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        var = getattr(fn, "variable", None)
        if var is not None:
            reached.add(id(var))
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return reached


def _step_loss(cfg: StepConfig, out: Any, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the model's logits against ``y``, the one loss of the train step.

    A model returning several logits in train mode (torchvision's googlenet and inception_v3: the main and the
    auxiliary classifiers) gets the sum of their losses, so every head takes part in the backward as in training;
    a head-less model (timm ``num_classes=0``: pooled features) is trained against labels within its output
    width, so the step described is one that runs. The labels are brought into that width in place (same tensor,
    same bytes): the prediction and the measurement see the same labels.
    """
    import torch
    import torch.nn.functional as F

    from lvmharness.core.errors import ConfigError

    outs = list(out) if isinstance(out, tuple | list) else [out]
    shapes = [tuple(o.shape) if isinstance(o, torch.Tensor) else type(o).__name__ for o in outs]
    if not outs or any(not isinstance(o, torch.Tensor) or o.ndim != 2 or o.shape[1] < 1 for o in outs):
        raise ConfigError(f"{cfg.model}: a train step needs (batch, classes) logits for its cross-entropy loss, but "
                          f"the model returns {shapes}; predict --mode inference, or build it with a classifier head")
    width = min(int(o.shape[1]) for o in outs)
    if width < NUM_LABELS:
        y.remainder_(width)
    loss = F.cross_entropy(outs[0].float(), y)
    for extra in outs[1:]:
        loss = loss + F.cross_entropy(extra.float(), y)
    return loss


def _first_step(cfg: StepConfig, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                autocast: Callable[[], contextlib.AbstractContextManager[Any]], prime: bool) -> torch.optim.Optimizer:
    """The train step before the measured one: it creates the optimizer state the measured step starts with."""
    import torch

    model.train()
    opt = _make_optimizer(cfg, model, device)
    with autocast():
        loss = _step_loss(cfg, model(x), y)
    if prime:
        # Fake tensors carry no values, so the first step's backward only decides which parameters get a
        # gradient (and so optimizer state): the autograd graph already says that. Zero gradients for exactly
        # those parameters, then the same optimizer.step() creates the same state, at a third of the cost.
        reached = _parameters_reached(loss)
        del loss
        for p in model.parameters():
            if id(p) in reached:
                p.grad = torch.zeros_like(p)
    else:
        loss.backward()
        del loss
    opt.step()
    opt.zero_grad(set_to_none=True)
    return opt


def _tracked_step(cfg: StepConfig, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, acct: Any,
                  opt: torch.optim.Optimizer | None,
                  autocast: Callable[[], contextlib.AbstractContextManager[Any]]) -> None:
    """The measured step itself, each phase under ``acct``."""
    import torch

    if opt is None:
        with acct.phase("forward"), torch.no_grad(), autocast():
            out = model(x)
            del out
        return
    with acct.phase("forward"), autocast():
        loss = _step_loss(cfg, model(x), y)
    with acct.phase("backward"):
        loss.backward()
        del loss
    with acct.phase("optimizer_step"):
        opt.step()
    with acct.phase("zero_grad"):
        opt.zero_grad(set_to_none=True)


def run_tracked(cfg: StepConfig, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                device: torch.device, *, accountant: str, per_layer: bool = False,
                before_step: Callable[[], None] | None = None, prime_first_step: bool = False) -> StepMemory:
    """Bring the model to the state before the step, then run the step under an accountant of live bytes.

    The same code runs on fake tensors (prediction, ``accountant="live"``) and on real ones (measurement,
    ``accountant="memtracker"``): that is what makes the two numbers the same quantity.
    """
    from lvmharness.measure.accounting import LiveTensorBytes, MemTrackerAccount, saved_for_backward
    from lvmharness.runtime.execution import autocast as amp_context

    _, autocast_dtype = dtype_mode(cfg)

    def autocast() -> contextlib.AbstractContextManager[Any]:
        return amp_context(device, autocast_dtype)  # the execution vocabulary: the same AMP as the measured cases

    opt = None
    if cfg.mode == "train":
        opt = _first_step(cfg, model, x, y, device, autocast, prime_first_step)
    else:
        model.eval()
    if before_step is not None:
        before_step()
    acct = LiveTensorBytes(device) if accountant == "live" else MemTrackerAccount(device)
    acct.track_start(model, opt, x, y)
    _tracked_step(cfg, model, x, y, acct, opt, autocast)
    total, cats, peak_phase, phase_peaks = acct.finish()
    saved: dict[str, int] = {}
    if per_layer:
        # A forward of its own: saved-tensor hooks change when autograd frees what it saved, so they must not
        # run inside the tracked step.
        model.train()
        with saved_for_backward(model, saved), autocast():
            out = model(x)
        del out
    extra: dict[str, Any] = {}
    if opt is not None:  # which optimizer kernels ran: the multi-tensor path holds more temporaries
        extra["optimizer_foreach"] = bool(opt.defaults.get("foreach"))
    return StepMemory(peak_bytes=total, breakdown=cats, peak_phase=peak_phase, phase_peaks=phase_peaks,
                      saved_for_backward=saved, params=sum(p.numel() for p in model.parameters()), extra=extra)
