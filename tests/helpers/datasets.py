"""Tiny datasets written in the real on-disk formats (torchvision's CIFAR-100 pickles, ImageFolder trees)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def write_cifar100(root: Path, *, train: int = 64, test: int = 32, seed: int = 0) -> Path:
    """``root/cifar-100-python/{train,test,meta}`` as torchvision reads them: uint8 rows of 3072 (R, G, B planes)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", train), ("test", test)):
        labels = [i % 100 for i in range(n)]
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        entry = {"filenames": [f"img_{i}.png" for i in range(n)], "batch_label": name, "fine_labels": labels,
                 "coarse_labels": [lab // 5 for lab in labels], "data": data}
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh)
    meta = {"fine_label_names": [f"class_{i:02d}" for i in range(100)],
            "coarse_label_names": [f"super_{i:02d}" for i in range(20)]}
    with open(folder / "meta", "wb") as fh:
        pickle.dump(meta, fh)
    return folder


def write_imagefolder(root: Path, *, classes: int = 3, per_class: int = 8, val_per_class: int = 4,
                      size: int = 40, flat: bool = False, seed: int = 0) -> Path:
    """``root/imagenet/{train,val}/<wnid>/*.JPEG`` (or the flat ``<wnid>_<i>.JPEG`` layout) with real JPEGs."""
    rng = np.random.default_rng(seed)
    base = root / "imagenet"
    for split, n in (("train", per_class), ("val", val_per_class)):
        for c in range(classes):
            wnid = f"n{1440764 + c:08d}"
            folder = base / split if flat else base / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, size=(size, size + 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG", quality=90)
    return base
