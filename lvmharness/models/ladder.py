"""The model ladder for 32 px grey images (Fashion-MNIST padded from 28 px): small members of five families, built
from timm's own classes with ``pretrained=False`` (timm's model names plus architecture overrides), spanning about
1 to 12 MMACs per image. Their total, about 65 MMACs, is what lets a 2-core CPU train all nine on 30,000 images in
under five minutes (``lvm accuracy --config quick``): training costs about 3 x the forward MACs per image, and fewer
images than that leave even the CNNs below the dataset README's small-CNN baselines. Torch-free:
:mod:`lvmharness.models.aliases` registers these as aliases.

Choices, per family, with the reason:
* ViT (Dosovitskiy et al. 2021): patch 4 -> an 8 x 8 token grid at 32 px (patch 16 would leave 2 x 2 tokens);
  3 blocks of width 48 and 64.
* DeiT (Touvron et al. 2021): timm's ``VisionTransformerDistilled`` (class token + distillation token, two heads),
  the same widths as the ViT rungs, so ViT vs DeiT differ by the distillation token and the training only.
* Swin (Liu et al. 2021): patch 4 -> 8 x 8 tokens, window 4 (the 7-px windows of ImageNet do not tile 8), two
  stages (8 x 8 in 4 windows, then 4 x 4 in one after the patch merging).
* ResNet (He et al. 2016): basic blocks at reduced width; timm's stem (stride 4) leaves 8 x 8 at stage 1.
* ConvNeXt (Liu et al. 2022), the fifth family, one size: ``convnext_atto`` at half its depths and width (patchify
  stem 4 -> 8 x 8). Its 7 x 7 depthwise convolutions and LayerNorms cost more time per MAC on a CPU than a ResNet's
  dense 3 x 3 convolutions, which the ladder's training times show.
"""

from __future__ import annotations

from typing import Any

LADDER_IMG_SIZE = 32
# (alias, timm name, family, architecture overrides); smallest first within a family.
LADDER: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("ladder_vit_tiny", "vit_tiny_patch16_224", "vit",
     dict(img_size=32, patch_size=4, embed_dim=48, depth=3, num_heads=2)),
    ("ladder_vit_small", "vit_tiny_patch16_224", "vit",
     dict(img_size=32, patch_size=4, embed_dim=64, depth=3, num_heads=2)),
    ("ladder_deit_tiny", "deit_tiny_distilled_patch16_224", "deit",
     dict(img_size=32, patch_size=4, embed_dim=48, depth=3, num_heads=2)),
    ("ladder_deit_small", "deit_tiny_distilled_patch16_224", "deit",
     dict(img_size=32, patch_size=4, embed_dim=64, depth=3, num_heads=2)),
    ("ladder_swin_tiny", "swin_tiny_patch4_window7_224", "swin",
     dict(img_size=32, patch_size=4, embed_dim=32, depths=(2, 2), num_heads=(1, 2), window_size=4)),
    ("ladder_swin_small", "swin_tiny_patch4_window7_224", "swin",
     dict(img_size=32, patch_size=4, embed_dim=48, depths=(2, 2), num_heads=(2, 4), window_size=4)),
    ("ladder_resnet_tiny", "resnet18", "resnet",
     dict(layers=(1, 1, 1, 1), channels=(16, 32, 64, 128), stem_width=16)),
    ("ladder_resnet_small", "resnet18", "resnet",
     dict(layers=(2, 2, 2, 2), channels=(32, 64, 128, 256), stem_width=32)),
    ("ladder_convnext_tiny", "convnext_atto", "convnext", dict(depths=(1, 1, 3, 1), dims=(16, 32, 64, 128))),
)
LADDER_ALIASES = tuple(entry[0] for entry in LADDER)
# The budgets of ``lvm accuracy --config`` (``lvmharness.train.accuracy.BUDGETS``), named here, torch-free, for the
# option parsers of the command and of the pytest plugin.
LADDER_CONFIGS = ("quick", "full")
# Models with a distillation token (a teacher can train them: train.py --distill_from).
DISTILLED = tuple(alias for alias, timm_name, _, _ in LADDER if "distilled" in timm_name)
