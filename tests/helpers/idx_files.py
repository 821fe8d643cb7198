"""Tiny Fashion-MNIST folders in the real IDX format (gzipped like Debian's package, or plain), written by tests."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import torch

IMAGE_MAGIC = 0x00000803
LABEL_MAGIC = 0x00000801


def idx_bytes(array: torch.Tensor, magic: int) -> bytes:
    """The IDX encoding written out from the format's definition: big-endian magic, one big-endian 32-bit size per
    dimension, then the uint8 data row-major."""
    assert array.dtype == torch.uint8 and array.dim() == magic & 0xFF
    return struct.pack(">I", magic) + struct.pack(f">{array.dim()}I", *array.shape) + array.numpy().tobytes()


def learnable_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` 28x28 uint8 images with labels i % 10: class c is a bright horizontal band at rows 2c..2c+4 on noise,
    so a small model learns them in a few steps."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 60, (n, 28, 28), generator=gen, dtype=torch.uint8)
    for i, c in enumerate(labels.tolist()):
        images[i, 2 * c + 2:2 * c + 6, 4:24] = 230
    return images, labels.to(torch.uint8)


def write_fashion_mnist(root: Path, *, train: int = 200, test: int = 100, gz: bool = True) -> Path:
    """``root/fashion-mnist/`` with the four files (names as Debian installs them); returns the folder."""
    folder = root / "fashion-mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", train, 1), ("t10k", test, 2)):
        images, labels = learnable_images(n, seed)
        for kind, arr, magic in (("images-idx3", images, IMAGE_MAGIC), ("labels-idx1", labels, LABEL_MAGIC)):
            data = idx_bytes(arr, magic)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return folder
