"""The model ladder for 32 px grey images (Fashion-MNIST padded from 28 px): small members of five families, built
from timm's own classes with ``pretrained=False`` (timm's model names plus architecture overrides), spanning about
4 to 47 MMACs per image (their total, about 200 MMACs, sets what a CPU trains in minutes). Torch-free:
:mod:`lvmharness.models.aliases` registers these as aliases.

Choices, per family, with the reason:
* ViT (Dosovitskiy et al. 2021): patch 4 -> an 8 x 8 token grid at 32 px (patch 16 would leave 2 x 2 tokens).
* DeiT (Touvron et al. 2021): timm's ``VisionTransformerDistilled`` (class token + distillation token, two heads),
  the same widths as the ViT rungs, so ViT vs DeiT differ by the distillation token and the training only.
* Swin (Liu et al. 2021): patch 2 -> 16 x 16 tokens, window 4 (the 7-px windows of ImageNet do not tile 16).
* ResNet (He et al. 2016): basic blocks at reduced width; timm's stem (stride 4) leaves 8 x 8 at stage 1.
* ConvNeXt (Liu et al. 2022): ``convnext_atto``'s depths at two widths (patchify stem 4 -> 8 x 8).
"""

from __future__ import annotations

from typing import Any

LADDER_IMG_SIZE = 32
# (alias, timm name, family, architecture overrides); smallest first within a family.
LADDER: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("ladder_vit_tiny", "vit_tiny_patch16_224", "vit",
     dict(img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=2)),
    ("ladder_vit_small", "vit_tiny_patch16_224", "vit",
     dict(img_size=32, patch_size=4, embed_dim=96, depth=5, num_heads=3)),
    ("ladder_deit_tiny", "deit_tiny_distilled_patch16_224", "deit",
     dict(img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=2)),
    ("ladder_deit_small", "deit_tiny_distilled_patch16_224", "deit",
     dict(img_size=32, patch_size=4, embed_dim=96, depth=5, num_heads=3)),
    ("ladder_swin_tiny", "swin_tiny_patch4_window7_224", "swin",
     dict(img_size=32, patch_size=2, embed_dim=32, depths=(2, 2), num_heads=(1, 2), window_size=4)),
    ("ladder_swin_small", "swin_tiny_patch4_window7_224", "swin",
     dict(img_size=32, patch_size=2, embed_dim=48, depths=(2, 2, 2), num_heads=(2, 4, 8), window_size=4)),
    ("ladder_resnet_tiny", "resnet18", "resnet",
     dict(layers=(1, 1, 1, 1), channels=(16, 32, 64, 128), stem_width=16)),
    ("ladder_resnet_small", "resnet18", "resnet",
     dict(layers=(2, 2, 2, 2), channels=(32, 64, 128, 256), stem_width=32)),
    ("ladder_convnext_tiny", "convnext_atto", "convnext", dict(dims=(24, 48, 96, 192))),
    ("ladder_convnext_small", "convnext_atto", "convnext", dict(dims=(40, 80, 160, 320))),
)
LADDER_ALIASES = tuple(entry[0] for entry in LADDER)
# Models with a distillation token (a teacher can train them: train.py --distill_from).
DISTILLED = tuple(alias for alias, timm_name, _, _ in LADDER if "distilled" in timm_name)
