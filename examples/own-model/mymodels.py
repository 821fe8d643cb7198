"""A small custom architecture, the kind of model a user benchmarks next to ViT/DeiT/Swin/ResNet.

``build`` is a plain factory (``--lvm-models mymodels:build``); ``tinyconv`` is the same network registered under
an alias with its family and native size (``--lvm-models tinyconv``).
"""

from __future__ import annotations

from torch import nn

import lvmharness


class TinyConvNet(nn.Module):
    """Two stride-2 3x3 convolutions, global average pooling and a linear classifier."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, kernel_size=3, stride=2, padding=1)  # H x W -> H/2 x W/2
        self.conv = nn.Conv2d(width, 2 * width, kernel_size=3, stride=2, padding=1)  # -> H/4 x W/4
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):  # type: ignore[no-untyped-def]
        x = self.act(self.stem(x))
        x = self.act(self.conv(x))
        return self.head(self.pool(x).flatten(1))


def build(num_classes: int = 10) -> nn.Module:
    """The factory: called with ``num_classes=`` (it takes no ``img_size``: a CNN takes any size)."""
    return TinyConvNet(num_classes=num_classes)


@lvmharness.register_model("tinyconv", family="tinyconv", default_img_size=32)
def tinyconv(num_classes: int = 10) -> nn.Module:
    return TinyConvNet(num_classes=num_classes)
