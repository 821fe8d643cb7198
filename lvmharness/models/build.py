"""Model registry: names -> models, creation on any device (``meta`` included), input-size checks.

A model is named by any of: an alias (``vit``, ``smoke_resnet``, or one registered with
``lvmharness.register_model``), a timm name, ``torchvision:NAME`` (torchvision's registry), a
``package.module:callable`` factory, or an entry point of the ``lvmharness.models`` group that an installed package
publishes (``mynet = "mypkg.models:build"``). The registry drives both creation and tests: every registered alias
is exercised by ``tests/models/test_models.py``.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import timm
import torch
from torch import nn

from lvmharness.models import sources
from lvmharness.models.aliases import (
    TORCHVISION_PREFIX,
    ModelError,
    ModelSpec,
    alias_names,
    family_of,
    lookup,
    spec_of_factory,
)
from lvmharness.models.sources import ModelSourceError

# Sanity bounds for a square input side, in pixels. Below 16 no model of the four families has a single
# patch/feature; above 4096 a ViT-B forward needs > 10 TB of attention scores.
MIN_IMG_SIZE = 16
MAX_IMG_SIZE = 4096



class UnknownModelError(ModelError):
    def __init__(self, name: str, matches: list[str]) -> None:
        self.name = name
        self.matches = matches
        hint = f" Close matches: {', '.join(matches)}." if matches else ""
        super().__init__(
            f"unknown model {name!r}: it is neither an lvmharness alias nor a timm model name.{hint} "
            "`lvm models` lists the aliases; `lvm models --timm 'PATTERN*'` searches timm's names."
        )


class InvalidInputSizeError(ModelError):
    def __init__(self, model: str, img_size: int, reason: str, valid: list[int], hint: str = "") -> None:
        self.model = model
        self.img_size = img_size
        self.valid = valid
        shown = f" Valid sizes near it: {', '.join(str(v) for v in valid)}." if valid else ""
        extra = f" {hint}" if hint else ""
        super().__init__(f"img_size {img_size} is not valid for {model}: {reason}.{shown}{extra}")


@functools.lru_cache(maxsize=1)
def _timm_names() -> tuple[str, ...]:
    return tuple(timm.list_models())


def _default_img_size(timm_name: str) -> int:
    cfg = timm.get_pretrained_cfg(timm_name.split(".")[0]) if "." not in timm_name else None
    size = None
    if cfg is not None:
        size = getattr(cfg, "input_size", None)
    if size is None:
        m = re.search(r"_(\d{2,4})$", timm_name.split(".")[0])
        return int(m.group(1)) if m else 224
    return int(size[-1])


ENTRY_POINT_GROUP = "lvmharness.models"


def _entry_points() -> dict[str, metadata.EntryPoint]:
    """Models that installed packages publish, e.g. in their pyproject.toml::

        [project.entry-points."lvmharness.models"]
        mynet = "mypkg.models:build"
    """
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def close_matches(name: str, n: int = 6) -> list[str]:
    pool = list(alias_names()) + list(_entry_points()) + list(_timm_names())
    matches = list(dict.fromkeys(difflib.get_close_matches(name, pool, n=n, cutoff=0.6)))
    if len(matches) < n:
        matches += [p for p in dict.fromkeys(pool) if name and name in p and p not in matches][: n - len(matches)]
    return matches


def resolve(name: str) -> ModelSpec:
    """A model name (alias, timm name, ``torchvision:NAME``, ``module:callable``, published entry point) -> spec.

    Unknown names fail here, before any work, with close matches; a ``module:callable`` is imported here (so a
    module that does not import or a missing attribute fails now), its factory is called only when building.
    """
    spec = lookup(name)
    if spec is not None:
        return spec
    if name.startswith(TORCHVISION_PREFIX):
        tv_name = sources.check_torchvision(name)
        return ModelSpec(name, name, family_of(tv_name), 224, note="torchvision")
    if ":" in name:
        sources.load_factory(name)
        registered_spec = spec_of_factory(name)  # decorated with register_model: its family and size
        if registered_spec is not None:
            return ModelSpec(name, name, registered_spec.family, registered_spec.default_img_size,
                             note=registered_spec.note)
        return ModelSpec(name, name, "custom", 224, note="factory")
    entry = _entry_points().get(name)
    if entry is not None:
        return _resolve_entry_point(entry)
    if timm.is_model(name):
        return ModelSpec(name, name, family_of(name), _default_img_size(name))
    raise UnknownModelError(name, close_matches(name))


def _resolve_entry_point(entry: metadata.EntryPoint) -> ModelSpec:
    """A published model: importing its module may register it (``register_model``); else it is a plain factory."""
    target = entry.value.strip()
    if ":" not in target:
        raise ModelSourceError(f"entry point {entry.name!r} of group {ENTRY_POINT_GROUP!r} is {target!r}; "
                               "expected 'package.module:callable'")
    sources.load_factory(target)
    spec = lookup(entry.name)
    if spec is not None:
        return spec
    base = resolve(target)
    return ModelSpec(entry.name, target, base.family, base.default_img_size, note="entry point")


@contextlib.contextmanager
def _state_on(device: torch.device) -> Iterator[None]:
    """Parameters and buffers go to ``device`` as a constructor registers them; everything else it computes stays
    on the CPU, where values exist.

    Under ``with torch.device("meta")`` a constructor's own arithmetic runs on meta too, and a constructor that
    reads a value back (torchvision's ``BlockParams.from_init_params`` calls ``.tolist()`` on a ``torch.arange``
    for RegNets) cannot. Here each tensor is still created on the CPU (``torch.empty``: no initialisation) and
    moved as it is registered, so the initialisation that follows runs on meta, and a tensor registered twice
    (tied weights) is moved once and stays one tensor.
    """
    register_parameter = nn.Module.register_parameter
    register_buffer = nn.Module.register_buffer

    def moved(t: torch.Tensor) -> torch.Tensor:
        return t if t.device == device else t.to(device)

    def param(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        value = param
        register_parameter(self, name, value)
        if value is not None and value.device != device:
            kind = type(value)
            extra = dict(value.__dict__)
            new = kind(moved(value.data), requires_grad=value.requires_grad)
            new.__dict__.update(extra)
            self._parameters[name] = new

    def buffer(self: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True) -> None:
        register_buffer(self, name, None if tensor is None else moved(tensor), persistent)

    nn.Module.register_parameter = param  # type: ignore[method-assign]
    nn.Module.register_buffer = buffer  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
        nn.Module.register_buffer = register_buffer  # type: ignore[method-assign]


def _is_meta_readback(exc: BaseException) -> bool:
    """A constructor that read a value back from a tensor it made under the meta device context."""
    text = str(exc)  # also when a factory's error wraps it (ModelSourceError repeats the message)
    return "meta" in text and (
        "Cannot copy out of meta tensor" in text or "item()" in text or "data-dependent" in text
        or "cannot be called on meta tensors" in text)


def build_on(device: str | torch.device, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with its parameters and buffers on ``device``.

    The constructor runs under ``torch.device(device)``; on ``meta`` a constructor that needs the values of the
    tensors it computes (see :func:`_state_on`) is built again with only its state on meta: building on meta
    never changes what a constructor computes, it only refuses to allocate the weights.
    """
    dev = torch.device(device)
    if dev.type != "meta":
        with dev:
            return build()
    try:
        with dev:
            return build()
    except Exception as exc:  # whatever the constructor (or a factory wrapping it) raised: retried only for this
        if not _is_meta_readback(exc):
            raise
    with _state_on(dev):
        return build()


def _build(spec: ModelSpec, img_size: int | None, num_classes: int | None, **extra: Any) -> nn.Module:
    if spec.source == "torchvision":
        if extra:
            raise ModelError(f"{spec.timm_name}: lvmharness builds torchvision models without weights; "
                             f"{', '.join(extra)} is for timm models")
        return sources.build_torchvision(spec.timm_name, num_classes, img_size)
    if spec.source == "factory":
        if extra:
            raise ModelError(f"{spec.timm_name}: {', '.join(extra)} is for timm models; a factory builds its own "
                             "weights")
        return sources.call_factory(spec.timm_name, {"img_size": img_size, "num_classes": num_classes})
    kwargs: dict[str, Any] = dict(spec.kwargs)
    kwargs.update(extra)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if img_size is not None and _takes_img_size(spec):
        kwargs["img_size"] = img_size
    return timm.create_model(spec.timm_name, **kwargs)


@functools.lru_cache(maxsize=256)
def _takes_img_size(spec: ModelSpec) -> bool:
    """Transformers bake the input size into position tables and need it at build time; CNNs reject it."""
    if "img_size" in spec.kwargs:
        return True
    try:
        build_on("meta", lambda: timm.create_model(spec.timm_name, img_size=spec.default_img_size, **spec.kwargs))
    except TypeError as exc:
        if "img_size" in str(exc):
            return False
        raise
    return True


# --------------------------------------------------------------------------------------------------------------
# Input-size rules. A model's structure says which square sizes it takes without cropping or padding:
#   * patch embedding (ViT/DeiT/Swin): side must be a multiple of the patch, else the conv silently crops;
#   * windowed attention (Swin): every stage's grid must be a multiple of its window, else timm pads tokens and
#     the measured cost is of a different computation;
#   * CNNs: side at least the total stride (32 for ResNet), so the last feature map is not empty.
# A meta-device forward at batch 1 then catches anything the rules do not know about.


@dataclass(frozen=True)
class SizeRule:
    patch: int  # side must be a multiple of this (1 for CNNs)
    min_size: int
    stage_factors: tuple[int, ...] = ()  # grid of stage i = side / patch / factor_i
    window: int = 0  # configured attention window; 0 for none

    def check(self, size: int) -> str | None:
        """Return why ``size`` is invalid, or None."""
        if size < self.min_size:
            return f"it is smaller than the minimum {self.min_size}"
        if size % self.patch:
            return f"it is not a multiple of the patch size {self.patch}"
        grid = size // self.patch
        for factor in self.stage_factors:
            if grid % factor:
                return f"the patch grid {grid} does not divide by the stage downsampling {factor}"
            res = grid // factor
            win = min(self.window, res)
            if win and res % win:
                return f"a stage grid of {res}x{res} is not a multiple of the attention window {self.window}"
        return None

    def valid_sizes(self, around: int, count: int = 6) -> list[int]:
        step = self.patch
        lo = max(self.min_size, MIN_IMG_SIZE)
        candidates = [s for s in range(lo - lo % step or step, MAX_IMG_SIZE + 1, step) if s >= lo]
        ok = [s for s in candidates if self.check(s) is None]
        ok.sort(key=lambda s: (abs(s - around), s))
        return sorted(ok[:count])


def _size_rule(model: nn.Module, default_reduction: int = 32) -> SizeRule:
    patch_embed = getattr(model, "patch_embed", None)
    patch_size = getattr(patch_embed, "patch_size", None)
    if patch_size is None and isinstance(getattr(model, "patch_size", None), int):
        patch_size = model.patch_size  # torchvision's VisionTransformer keeps it on the model
    if patch_size is not None:
        patch = int(patch_size[0]) if isinstance(patch_size, tuple | list) else int(patch_size)
        grids: list[int] = []
        window = 0
        for mod in model.modules():
            res = getattr(mod, "input_resolution", None)
            win = getattr(mod, "window_size", None)
            if res is not None and win is not None:
                grids.append(int(res[0]))
                window = max(window, int(win[0]) if isinstance(win, tuple | list) else int(win))
        if grids:
            top = max(grids)
            factors = tuple(sorted({top // g for g in grids}))
            return SizeRule(patch, patch * max(factors), factors, window)
        return SizeRule(patch, patch)
    info = getattr(model, "feature_info", None)
    reduction = default_reduction
    if isinstance(info, list) and info:
        reduction = int(info[-1].get("reduction", 32))
    elif info is not None and hasattr(info, "reduction"):
        reduction = int(info.reduction()[-1])
    return SizeRule(1, reduction)


def _variant_hint(spec: ModelSpec, size: int) -> str:
    base = spec.timm_name.split(".")[0]
    if spec.source != "timm" or not re.search(r"_\d{2,4}$", base):
        return ""
    pattern = re.sub(r"_\d{2,4}$", f"_{size}", re.sub(r"window\d+", "window*", base))
    names = [n for n in _timm_names() if fnmatch.fnmatchcase(n, pattern)]
    return f"timm has a variant configured for {size}: {', '.join(names[:3])}." if names else ""


@functools.lru_cache(maxsize=512)
def _check_cached(spec: ModelSpec, img_size: int) -> None:
    if not MIN_IMG_SIZE <= img_size <= MAX_IMG_SIZE:
        raise InvalidInputSizeError(
            spec.alias, img_size, f"it is outside the supported range {MIN_IMG_SIZE}..{MAX_IMG_SIZE}",
            [], "",
        )
    build_error: str | None = None
    try:
        model = build_on("meta", lambda: _build(spec, img_size, None))
    except (AssertionError, ValueError, RuntimeError) as exc:
        # A constructor that bakes the size in may refuse it (torchvision's ViT asserts the side divides by the
        # patch); the structure's rule then comes from the model at its own size.
        if img_size == spec.default_img_size:
            raise
        build_error = f"the model cannot be built for this size ({type(exc).__name__}: {exc})"
        model = build_on("meta", lambda: _build(spec, spec.default_img_size, None))
    # timm CNNs are 32-stride unless their feature_info says otherwise; a model from elsewhere is judged by the
    # meta-device forward below alone.
    rule = _size_rule(model, 32 if spec.source == "timm" else MIN_IMG_SIZE)
    reason = rule.check(img_size) or build_error
    if reason is None:
        model.eval()
        try:
            with torch.no_grad():
                model(torch.empty(1, 3, img_size, img_size, device="meta"))
        except Exception as exc:  # any failure of the model itself at this size
            reason = f"the model cannot run at this size ({type(exc).__name__}: {exc})"
    if reason is not None:
        # The rule's sizes are offered only when the rule itself rejected this size: when the model failed at a
        # size the rule allows, the rule's neighbours are unproven (and would list the very size just rejected).
        valid = rule.valid_sizes(img_size) if rule.check(img_size) is not None else []
        raise InvalidInputSizeError(spec.alias, img_size, reason, valid, _variant_hint(spec, img_size))


def check_img_size(model: str | ModelSpec, img_size: int) -> None:
    """Raise InvalidInputSizeError (with the valid sizes) if the model cannot take a square ``img_size`` input."""
    spec = resolve(model) if isinstance(model, str) else model
    _check_cached(spec, int(img_size))


def create_model(
    model: str | ModelSpec,
    *,
    img_size: int | None = None,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    pretrained: bool = False,
    check_size: bool = True,
) -> nn.Module:
    """Build a model directly on ``device`` (``meta`` allocates nothing), optionally cast to ``dtype``.

    ``pretrained=True`` downloads timm hub weights and so needs a network; tests never use it.
    """
    spec = resolve(model) if isinstance(model, str) else model
    size = img_size if img_size is not None else spec.default_img_size
    if check_size:
        check_img_size(spec, size)
    extra: dict[str, Any] = {"pretrained": True} if pretrained else {}
    net = build_on(device, lambda: _build(spec, size, num_classes, **extra))
    if dtype is not None:
        net = net.to(dtype=dtype)
    return net


def count_params(model: nn.Module) -> int:
    """Parameters counted once even when shared (``model.parameters()`` deduplicates by identity)."""
    return sum(p.numel() for p in model.parameters())
