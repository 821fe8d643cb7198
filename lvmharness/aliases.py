"""The alias table: original, size and smoke aliases of timm models. Pure data: no torch or timm import, so readers
such as the architecture page can list models without loading PyTorch. ``lvmharness.models`` builds them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

FAMILIES = ("vit", "deit", "swin", "resnet")


@dataclass(frozen=True)
class ModelSpec:
    """What to build: a timm name plus architecture overrides, and the name the user asked for."""

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
        raise ValueError(f"alias {alias!r} is already registered")
    _REGISTRY[alias] = ModelSpec(alias, timm_name, family, default_img_size, tuple(sorted(kwargs.items())), note)


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
