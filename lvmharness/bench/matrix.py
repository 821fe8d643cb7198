"""The case matrix: which models × devices × dtypes × batch sizes × image sizes a bench run measures.

A profile (``--lvm-profile smoke|default|full``) is a named matrix plus its timing budget. Torch-free: the pytest
plugin reads profile names and parses options without loading PyTorch or timm (a project that merely has
lvmharness installed pays nothing); model names are resolved, and timm imported, only when cases are built.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lvmharness.core.errors import BadValueError
from lvmharness.measure.budget import TimingConfig
from lvmharness.models.aliases import ORIGINAL_ALIASES
from lvmharness.store.records import case_label, record_identity

if TYPE_CHECKING:
    from lvmharness.models.aliases import ModelSpec
    from lvmharness.runtime.execution import ExecOptions

SMOKE_MODELS = ("smoke_vit", "smoke_deit", "smoke_swin", "smoke_resnet")
POW2_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class Grid:
    """A cross product of models × batch sizes × image sizes (None = the model's native size)."""

    models: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    img_sizes: tuple[int | None, ...] = (None,)
    metrics: tuple[str, ...] | None = None  # benches this grid feeds (their lvm_metric marker); None = all

    def feeds(self, metric: str | None) -> bool:
        return metric is None or self.metrics is None or metric in self.metrics


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    grids: tuple[Grid, ...]
    dtypes: tuple[str, ...] = ("fp32",)
    timing: TimingConfig = field(default_factory=TimingConfig)
    offline_batch: int = 8  # batch of the offline throughput recorded beside per-instance latency
    instance_budget_s: float = 5.0  # per-instance requests run at least this long (and >= the p90 minimum)
    train_steps: int = 5  # bounded training steps per training bench case

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m for g in self.grids for m in g.models))


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke",
        "tiny models at their native 32/64 px and at 96 px, a few rounds each: seconds, for CI",
        (Grid(SMOKE_MODELS, (1, 2), (None,)), Grid(SMOKE_MODELS, (1,), (96,))),
        timing=TimingConfig(warmup_rounds=2, warmup_s=0.01, budget_s=0.05, min_rounds=3, max_rounds=20),
        offline_batch=4,
        instance_budget_s=0.0,
        train_steps=3,
    ),
    "default": Profile(
        "default",
        "the four original models (vit, deit, swin, resnet) at 224 (batch 1 and 8) and 384 (batch 1), for a 2-core CPU",
        (
            Grid(ORIGINAL_ALIASES, (1, 8), (224,)),
            # Resolution scaling for latency and FLOPs; memory, per-instance and training stay at 224 on a CPU.
            Grid(("vit", "deit", "resnet"), (1,), (384,), metrics=("latency", "flops")),
            # Swin-B with window 7 cannot take 384 (96 is not a multiple of 7): timm's 384 variant has window 12.
            Grid(("swin_base_patch4_window12_384",), (1,), (384,), metrics=("latency", "flops")),
        ),
        timing=TimingConfig(warmup_rounds=3, warmup_s=0.3, budget_s=2.0, min_rounds=5, max_rounds=100),
    ),
    "full": Profile(
        "full",
        "tiny…large of the four families, batch 1…256, 224 and 384, fp32 and bf16: for GPUs",
        (
            Grid(
                ("vit_tiny", "vit_small", "vit_base", "vit_large", "deit_tiny", "deit_small", "deit_base",
                 "swin_tiny", "swin_small", "swin_base", "swin_large",
                 "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"),
                POW2_BATCHES, (224,),
            ),
            Grid(
                ("vit_tiny", "vit_small", "vit_base", "vit_large", "deit_tiny", "deit_small", "deit_base",
                 "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"),
                POW2_BATCHES, (384,),
            ),
            Grid(
                ("swin_base_patch4_window12_384", "swin_large_patch4_window12_384"), POW2_BATCHES, (384,)
            ),
        ),
        dtypes=("fp32", "bf16"),
        timing=TimingConfig(warmup_rounds=5, warmup_s=1.0, budget_s=3.0, min_rounds=10, max_rounds=500),
        offline_batch=64,
        instance_budget_s=10.0,
        train_steps=50,
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise BadValueError(f"unknown profile {name!r}: valid profiles are {', '.join(PROFILES)}") from None


@functools.lru_cache(maxsize=512)
def spec_of(model: str) -> ModelSpec:
    from lvmharness.models.build import resolve  # imports timm: only when a case needs its model

    return resolve(model)


@dataclass(frozen=True)
class BenchCase:
    model: str  # as the user named it (alias or timm name)
    device: str
    dtype: str
    batch_size: int | None  # None: a case over all batch sizes (max-batch search, per-instance latency)
    img_size: int
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def spec(self) -> ModelSpec:
        return spec_of(self.model)

    @property
    def label(self) -> str:
        return case_label(self.model, self.device, self.dtype, self.batch_size, self.img_size, dict(self.options))

    def exec_options(self) -> ExecOptions:
        from lvmharness.runtime.execution import ExecOptions

        opts = dict(self.options)
        compile_opt = opts.get("compile")
        return ExecOptions(
            dtype=self.dtype,
            channels_last=bool(opts.get("channels_last")),
            compile=bool(compile_opt),
            compile_backend=compile_opt if isinstance(compile_opt, str) else "inductor",
        )

    def identity(self, metric: str, phase: str = "inference") -> dict[str, Any]:
        """The identity fields of a result record for this case."""
        spec = self.spec
        return record_identity(
            metric=metric, model=spec.timm_name, alias=self.model, family=spec.family, device=self.device,
            dtype=self.dtype, batch_size=self.batch_size, img_size=self.img_size, phase=phase,
            options=dict(self.options),
        )


def build_cases(
    profile: Profile,
    *,
    devices: Sequence[str],
    models: Sequence[str] | None = None,
    dtypes: Sequence[str] | None = None,
    batch_sizes: Sequence[int] | None = None,
    img_sizes: Sequence[int] | None = None,
    options: dict[str, Any] | None = None,
    metric: str | None = None,
) -> list[BenchCase]:
    """Expand a profile, with any axis overridden, into cases ordered model-major (so a built model is reused).

    Overriding models without sizes runs each model at its native size; unknown model names raise here, before
    any work, with close matches. ``metric`` keeps only the grids that feed that bench.
    """
    if models:
        for m in models:
            spec_of(m)  # raises UnknownModelError early
        grids: tuple[Grid, ...] = (
            Grid(tuple(models), tuple(batch_sizes or _profile_batches(profile)), tuple(img_sizes or (None,))),
        )
    else:
        grids = tuple(
            Grid(g.models, tuple(batch_sizes or g.batch_sizes), tuple(img_sizes or g.img_sizes))
            for g in profile.grids
            if g.feeds(metric)
        )
    seen: dict[BenchCase, None] = {}
    for grid in grids:
        for model in grid.models:
            for device in devices:
                for dtype in dtypes or profile.dtypes:
                    for size in grid.img_sizes:
                        for batch in grid.batch_sizes:
                            img = size if size is not None else spec_of(model).default_img_size
                            opts = tuple(sorted((options or {}).items()))
                            seen.setdefault(BenchCase(model, device, dtype, batch, img, opts), None)
    order = {m: i for i, m in enumerate(dict.fromkeys(c.model for c in seen))}
    return sorted(seen, key=lambda c: (order[c.model], c.device, c.dtype))


def _profile_batches(profile: Profile) -> tuple[int, ...]:
    return tuple(sorted({b for g in profile.grids for b in g.batch_sizes}))


# The axes of a case. A bench varies over some of them (``@pytest.mark.lvm_axes("model", "img_size")``); every
# other axis takes one value: its fixed value if the bench gives one, else the default below.
AXES = ("model", "device", "dtype", "batch_size", "img_size")
_AXIS_DEFAULTS: dict[str, Any] = {
    "device": "meta",  # a bench that does not vary the device needs none (counting runs on meta)
    "dtype": "fp32",
    "batch_size": None,  # a case over all batch sizes (the bench chooses them: max-batch search, per-instance)
    "img_size": None,  # the model's native size
}


def project(cases: Sequence[BenchCase], axes: Sequence[str], fixed: Mapping[str, Any] | None = None) -> list[BenchCase]:
    """The cases a bench that varies only ``axes`` runs, each once, in the matrix's order.

    Execution options (channels_last, compile) belong to a real device, so they are kept only when ``device`` is an
    axis. ``model`` must be one: the matrix's models are what the user chose.
    """
    fixed = dict(fixed or {})
    unknown = sorted(set(axes) - set(AXES)) + sorted(set(fixed) - set(_AXIS_DEFAULTS))
    if unknown:
        raise BadValueError(f"unknown axis {', '.join(map(repr, unknown))}: the axes are {', '.join(AXES)} "
                         "(and every axis but model may be given a fixed value)")
    if "model" not in axes:
        raise BadValueError("'model' must be an axis: the models are what the user chose (--lvm-models)")
    both = sorted(set(axes) & set(fixed))
    if both:
        raise BadValueError(f"{', '.join(both)} cannot be both an axis and fixed")

    def value(case: BenchCase, axis: str) -> Any:
        if axis in axes:
            return getattr(case, axis)
        return fixed.get(axis, _AXIS_DEFAULTS[axis])

    out: dict[BenchCase, None] = {}
    for c in cases:
        img = value(c, "img_size")
        out.setdefault(BenchCase(
            c.model, value(c, "device"), value(c, "dtype"), value(c, "batch_size"),
            img if img is not None else c.spec.default_img_size,
            c.options if "device" in axes else (),
        ), None)
    return list(out)
