"""The alias table: original, size and smoke aliases of timm models, and the models users register. No torch or
timm import, so readers such as the architecture page can list models without loading PyTorch.
``lvmharness.models.build`` resolves and builds them.

A user's own model joins the table with a decorator, in a conftest.py or in their package::

    @lvmharness.register_model("mynet", family="mynet", default_img_size=32)
    def build(img_size: int = 32, num_classes: int = 10) -> nn.Module: ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from lvmharness.core.errors import UserError

FAMILIES = ("vit", "deit", "swin", "resnet", "convnext")  # the four of the design + the accuracy ladder's ConvNeXt
TORCHVISION_PREFIX = "torchvision:"

F = TypeVar("F", bound=Callable[..., Any])


class ModelError(UserError, ValueError):
    """Base class of model errors; the message says what was wrong and what is valid."""


@dataclass(frozen=True)
class ModelSpec:
    """What to build, and the name the user asked for (``alias``).

    ``timm_name`` is the model as records name it: a timm name (built by timm with ``overrides``),
    ``torchvision:NAME`` (torchvision's registry) or ``package.module:callable`` (a factory). Aliases and timm
    names never contain ':'.
    """

    alias: str
    timm_name: str
    family: str
    default_img_size: int = 224
    # Architecture overrides passed to timm.create_model, as sorted items so the spec stays hashable.
    overrides: tuple[tuple[str, Any], ...] = ()
    note: str = ""

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.overrides)

    @property
    def source(self) -> str:
        """``timm``, ``torchvision`` or ``factory``."""
        if self.timm_name.startswith(TORCHVISION_PREFIX):
            return "torchvision"
        return "factory" if ":" in self.timm_name else "timm"

    @property
    def portable_name(self) -> str:
        """A name that resolves to this model in a fresh process too (the isolated memory child): the import path
        of a factory (its alias may be registered only in this process), else the alias."""
        return self.timm_name if self.source == "factory" else self.alias


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    alias: str,
    timm_name: str,
    family: str,
    *,
    default_img_size: int = 224,
    note: str = "",
    **kwargs: Any,
) -> None:
    if alias in _REGISTRY:
        raise ModelError(f"alias {alias!r} is already registered")
    _REGISTRY[alias] = ModelSpec(alias, timm_name, family, default_img_size, tuple(sorted(kwargs.items())), note)


_FACTORIES: dict[str, Callable[..., Any]] = {}  # import path -> the registered callable itself


def register_model(alias: str, *, family: str = "custom", default_img_size: int = 224,
                   note: str = "") -> Callable[[F], F]:
    """Register a factory returning an ``nn.Module`` under ``alias`` (decorator; returns the factory unchanged).

    The factory is called with ``img_size=`` and ``num_classes=`` when its signature accepts them. Records name
    the model by its import path (``package.module:function``), from which a fresh process rebuilds it.
    """
    if ":" in alias or not alias.strip():
        raise ModelError(f"alias {alias!r}: an alias is a plain name (no ':'), e.g. 'mynet'")
    if default_img_size < 1:
        raise ModelError(f"default_img_size must be a positive number of pixels, got {default_img_size}")

    def decorate(fn: F) -> F:
        target = f"{fn.__module__}:{fn.__qualname__}"
        if "<" in target:
            raise ModelError(f"register_model({alias!r}): {target} cannot be imported by path (a lambda or a "
                             "function defined inside another); register a module-level function")
        known = _REGISTRY.get(alias)
        if known is not None and known.timm_name != target:
            raise ModelError(f"alias {alias!r} is already registered (for {known.timm_name})")
        # The same function registered again (its module imported twice, e.g. by pytest and by a child) is fine.
        _REGISTRY[alias] = ModelSpec(alias, target, family, default_img_size, (), note or "registered")
        _FACTORIES[target] = fn
        return fn

    return decorate


def unregister(alias: str) -> None:
    """Remove an alias (a notebook re-defining its model, a test cleaning up); built-in aliases stay."""
    spec = _REGISTRY.get(alias)
    if spec is None or spec.source != "factory":
        raise ModelError(f"{alias!r} is not a registered factory alias")
    del _REGISTRY[alias]
    _FACTORIES.pop(spec.timm_name, None)


def factory_of(target: str) -> Callable[..., Any] | None:
    """The callable registered under import path ``target`` in this process, if any."""
    return _FACTORIES.get(target)


def spec_of_factory(target: str) -> ModelSpec | None:
    """The registered spec whose factory is ``target`` (for its family and default size), if any."""
    return next((s for s in _REGISTRY.values() if s.timm_name == target), None)


# The four names the original project used, exactly as it used them.
ORIGINAL_ALIASES = ("vit", "deit", "swin", "resnet")
register("vit", "vit_base_patch16_224", "vit", note="original alias")
register("deit", "deit_base_patch16_224", "deit", note="original alias")
register("swin", "swin_base_patch4_window7_224", "swin", note="original alias")
register("resnet", "resnet50", "resnet", note="original alias")
# Size aliases.
for _size in ("tiny", "small", "base", "large"):
    register(f"vit_{_size}", f"vit_{_size}_patch16_224", "vit")
register("vit_huge", "vit_huge_patch14_224", "vit")
for _size in ("tiny", "small", "base"):
    register(f"deit_{_size}", f"deit_{_size}_patch16_224", "deit")
for _size in ("tiny", "small", "base", "large"):
    register(f"swin_{_size}", f"swin_{_size}_patch4_window7_224", "swin")
for _depth in (18, 34, 50, 101, 152):
    register(f"resnet{_depth}", f"resnet{_depth}", "resnet")
# Smoke models: the four architectures at toy width/depth and 32 px, for tests and CI (milliseconds a forward).
register(
    "smoke_vit", "vit_tiny_patch16_224", "vit", default_img_size=32, note="tiny, for tests/CI",
    img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2,
)
register(
    "smoke_deit", "deit_tiny_patch16_224", "deit", default_img_size=32, note="tiny, for tests/CI",
    img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3,
)
register(
    "smoke_swin", "swin_tiny_patch4_window7_224", "swin", default_img_size=32, note="tiny, for tests/CI",
    img_size=32, embed_dim=24, depths=(2, 2), num_heads=(1, 2), window_size=4,
)
register(
    "smoke_resnet", "resnet18", "resnet", default_img_size=64, note="tiny, for tests/CI",
    layers=(1, 1, 1, 1), channels=(16, 32, 64, 128), stem_width=16,
)
# The accuracy ladder for 32 px grey images (lvmharness.models.ladder): lvm accuracy trains these.
from lvmharness.models.ladder import LADDER, LADDER_IMG_SIZE  # noqa: E402 - data only, no torch

for _alias, _timm_name, _family, _overrides in LADDER:
    register(_alias, _timm_name, _family, default_img_size=LADDER_IMG_SIZE, note="accuracy ladder, 32 px",
             **_overrides)


def registered() -> Iterator[ModelSpec]:
    yield from _REGISTRY.values()


def lookup(alias: str) -> ModelSpec | None:
    return _REGISTRY.get(alias)


def alias_names() -> list[str]:
    """Every registered alias, in registration order."""
    return list(_REGISTRY)


def family_of(timm_name: str) -> str:
    base = timm_name.split(".")[0]
    for fam in FAMILIES:
        if base.startswith(fam):
            return fam
    return base.split("_")[0]


def canonical_model(model: str) -> str:
    """Aliases without architecture overrides share their timm model's files (``vit`` and ``vit_base`` are one)."""
    spec = lookup(model)
    if spec is not None and not spec.overrides:
        return spec.timm_name
    return model


def graph_name(model: str, img_size: int, batch_size: int, dtype: str) -> str:
    """File stem of a saved graph: ``vit_base_patch16_224-224-b1-fp32``. The ':' of ``torchvision:NAME`` and
    ``module:callable`` becomes '.', so the stem stays a plain file name."""
    return f"{canonical_model(model).replace(':', '.')}-{img_size}-b{batch_size}-{dtype}"
