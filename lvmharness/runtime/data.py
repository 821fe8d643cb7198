"""Datasets in their real on-disk formats, and transforms sized to the model's input.

* CIFAR-100: torchvision's format, ``<data_dir>/cifar-100-python/{train,test,meta}`` (pickles).
* ImageNet-1K: ``<data_dir>/imagenet/{train,val}/<wnid>/*.JPEG`` (ImageFolder), or the flat layout
  ``<data_dir>/imagenet/{train,val}/<wnid>_<anything>.JPEG`` where the label is the file name's prefix.
* fashion_mnist: the original IDX files (gzipped or not) in ``<data_dir>/fashion-mnist/`` or Debian's
  ``/usr/share/datasets/fashion-mnist/`` (``apt-get install dataset-fashion-mnist``); grey replicated to 3
  channels, 28 px padded to 32 (see :mod:`lvmharness.runtime.idx_data`).
* digits: scikit-learn's bundled 8x8 handwritten digits, upsampled the same way (a small second real dataset).
* synthetic: deterministic images of any count and class count, learnable (each class has its own colour
  offset), generated on the fly: for running without data and for benches.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from lvmharness.core.errors import UserError
from lvmharness.runtime import idx_data

DATASETS = ("cifar100", "imagenet", "fashion_mnist", "digits", "synthetic")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMG_EXTENSIONS = (".jpeg", ".jpg", ".png", ".webp", ".bmp")
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A dataset that is not where it should be, or not readable; the message says where, in what layout, and
    what to do (options named as ``{opt:FIELD}``, rendered by the front end: see lvmharness.core.errors)."""

    def __init__(self, template: str, *, field: str | None = "dataset") -> None:
        super().__init__(template, field=field)


def train_transform(img_size: int) -> Callable[[Any], torch.Tensor]:
    from torchvision.transforms import v2

    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(img_size, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def eval_transform(img_size: int) -> Callable[[Any], torch.Tensor]:
    """Resize the short side to img_size / 0.875 (timm's default crop_pct), center crop, normalize."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.ToImage(),
        v2.Resize(math.floor(img_size / 0.875), antialias=True),
        v2.CenterCrop(img_size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


class SyntheticImages(Dataset[tuple[torch.Tensor, int]]):
    """``size`` images of ``img_size``² with labels ``i % num_classes``; item i is the same on every call.

    Learnable: image = Gaussian noise + its class's colour offset (one N(0, 1) value per channel, drawn from
    ``seed``). Splits of one dataset share the offsets and differ in their noise: a split starting at
    ``first_index`` holds the items first_index, first_index + 1, ... of the same endless sequence."""

    def __init__(self, size: int, num_classes: int, img_size: int, seed: int = 0, first_index: int = 0) -> None:
        if size < 1 or num_classes < 1 or img_size < 1:
            raise ValueError("synthetic dataset needs size, num_classes and img_size >= 1")
        self.size, self.num_classes, self.img_size, self.seed = size, num_classes, img_size, seed
        self.first_index = first_index
        gen = torch.Generator().manual_seed(seed)
        self.class_offsets = torch.randn(num_classes, 3, 1, 1, generator=gen)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.size:
            raise IndexError(index)
        label = index % self.num_classes
        # + 1: no item's noise seed equals the offsets' seed (item 0 of seed 0 would replay the offsets' draws)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.first_index + index + 1)
        x = torch.randn(3, self.img_size, self.img_size, generator=gen) + self.class_offsets[label]
        return x, label


def synthetic_samples(count: int, *, seed: int = 0, min_side: int = 200, max_side: int = 320) -> list[torch.Tensor]:
    """Deterministic uint8 CHW images of varied sizes, standing in for decoded JPEGs."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        h, w = torch.randint(min_side, max_side + 1, (2,), generator=gen).tolist()
        out.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen))
    return out


class FlatImageFolder(Dataset[tuple[Any, int]]):
    """The original project's flat layout: every image directly in ``root``, labelled by its file name up to '_'."""

    def __init__(self, root: Path, transform: Callable[[Any], Any] | None = None) -> None:
        self.files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMG_EXTENSIONS and "_" in p.stem)
        if not self.files:
            raise DatasetNotFoundError(f"{root}: no '<label>_<name>.JPEG' images")
        self.classes = sorted({p.stem.split("_", 1)[0] for p in self.files})
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.targets = [self.class_to_idx[p.stem.split("_", 1)[0]] for p in self.files]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        with Image.open(self.files[index]) as im:
            img = im.convert("RGB")
        return (self.transform(img) if self.transform else img), self.targets[index]


def _cifar100_class() -> Any:
    from torchvision.datasets import CIFAR100

    class CIFAR100Files(CIFAR100):
        """torchvision's CIFAR-100 reader, with the md5 check only where torchvision downloads: a copy made by
        other means (or a test's tiny file in the same format) is read as long as the files are there."""

        def _check_integrity(self) -> bool:
            folder = Path(self.root) / self.base_folder
            return all((folder / name).is_file() for name, _ in (*self.train_list, *self.test_list))

        def _load_meta(self) -> None:
            path = Path(self.root) / self.base_folder / self.meta["filename"]
            if not path.is_file():
                raise RuntimeError(f"CIFAR-100 metadata file {path} not found")
            with open(path, "rb") as fh:
                meta = pickle.load(fh, encoding="latin1")
            self.classes = meta[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    return CIFAR100Files


@dataclass
class DataSplits:
    train: Dataset[Any]
    val: Dataset[Any]
    num_classes: int
    name: str
    source: str  # where it came from, for the record


def _missing(name: str, expected: Path, layout: str, how: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"dataset {name!r} not found at {expected}. Expected layout: {layout}. {how} "
        "To run without it, pass {opt:dataset} synthetic."
    )


def _imagenet_split(split_dir: Path, transform: Callable[[Any], Any]) -> tuple[Dataset[Any], int]:
    from torchvision.datasets import ImageFolder

    if any(p.is_dir() for p in split_dir.iterdir()):
        ds = ImageFolder(str(split_dir), transform=transform)
        return ds, len(ds.classes)
    flat = FlatImageFolder(split_dir, transform=transform)
    return flat, len(flat.classes)


def _synthetic(img_size: int, size: int, classes: int, seed: int) -> DataSplits:
    """A quarter as many validation images as training ones, continuing the same sequence (fresh noise)."""
    val_size = max(1, size // 4)
    return DataSplits(
        SyntheticImages(size, classes, img_size, seed),
        SyntheticImages(val_size, classes, img_size, seed, first_index=size),
        classes, "synthetic", f"synthetic: {size} train / {val_size} val, {classes} classes",
    )


def _cifar100(root: Path, img_size: int, download: bool) -> DataSplits:
    CIFAR100 = _cifar100_class()
    folder = root / "cifar-100-python"
    if not download and not all((folder / f).is_file() for f in ("train", "test", "meta")):
        raise _missing(
            "cifar100", folder, "cifar-100-python/{train,test,meta} (torchvision's pickles)",
            f"Get it with {{opt:download}} (machines online) or unpack {CIFAR100_URL} into {root}.",
        )
    try:
        train = CIFAR100(str(root), train=True, transform=train_transform(img_size), download=download)
        val = CIFAR100(str(root), train=False, transform=eval_transform(img_size), download=download)
    except Exception as exc:
        # A truncated or foreign file: unpickling junk may raise "AttributeError, EOFError, ImportError, and
        # IndexError" among others (the pickle module's documentation), UnpicklingError for a bad opcode,
        # KeyError/ValueError for a pickle without CIFAR's b"data"/b"fine_labels" arrays of the right shape.
        raise DatasetNotFoundError(
            f"CIFAR-100 at {folder} could not be read ({type(exc).__name__}: {str(exc)[:200]}); the files "
            f"must be torchvision's pickles: unpack {CIFAR100_URL} again into {root}", field="data_dir"
        ) from exc
    return DataSplits(train, val, 100, "cifar100", str(folder))


def _imagenet(root: Path, img_size: int) -> DataSplits:
    folder = root / "imagenet"
    if not (folder / "train").is_dir() or not (folder / "val").is_dir():
        raise _missing(
            "imagenet", folder,
            "imagenet/{train,val}/<wnid>/*.JPEG (ImageFolder) or imagenet/{train,val}/<wnid>_*.JPEG",
            "ImageNet-1K needs a licence: download ILSVRC2012 from image-net.org and arrange it in that layout.",
        )
    train_ds, n_train = _imagenet_split(folder / "train", train_transform(img_size))
    val_ds, n_val = _imagenet_split(folder / "val", eval_transform(img_size))
    if n_train != n_val:
        raise DatasetNotFoundError(f"{folder}: train has {n_train} classes but val has {n_val}")
    return DataSplits(train_ds, val_ds, n_train, "imagenet", str(folder))


def _grey(name: str, root: Path, img_size: int, seed: int) -> DataSplits:
    """Fashion-MNIST (IDX files under ``root``) or scikit-learn's digits, grey replicated to 3 channels."""
    try:
        grey = idx_data.fashion_mnist(root, img_size=img_size) if name == "fashion_mnist" else \
            idx_data.digits(img_size=img_size, seed=seed)
    except idx_data.IdxError as exc:
        raise DatasetNotFoundError(exc.template, field=exc.field) from None
    return DataSplits(grey.train, grey.val, grey.num_classes, name, grey.source)


def build(
    name: str,
    *,
    data_dir: Path | str = "data",
    img_size: int = 224,
    download: bool = False,
    synthetic_size: int = 1024,
    synthetic_classes: int = 100,
    seed: int = 0,
) -> DataSplits:
    """Train and validation splits of a dataset, with transforms sized to ``img_size``."""
    root = Path(data_dir)
    if name == "synthetic":
        return _synthetic(img_size, synthetic_size, synthetic_classes, seed)
    if name == "cifar100":
        return _cifar100(root, img_size, download)
    if name == "imagenet":
        return _imagenet(root, img_size)
    if name in ("fashion_mnist", "digits"):
        return _grey(name, root, img_size, seed)
    raise ValueError(f"unknown dataset {name!r}: valid datasets are {', '.join(DATASETS)}")


def raw_samples(name: str, *, data_dir: Path | str = "data", count: int = 64) -> list[Any]:
    """The first ``count`` validation images of a dataset, decoded but untransformed (PIL images), for
    per-instance latency: preprocessing is then timed per request, apart from the model."""
    if name == "synthetic":
        return synthetic_samples(count)
    splits = build(name, data_dir=data_dir, img_size=32)
    val = splits.val
    base: Any = getattr(val, "dataset", val)  # a Subset wraps the dataset
    base.transform = None  # raw images: the per-instance loop applies and times the eval transform itself
    n = min(count, len(base))
    if n == 0:
        raise DatasetNotFoundError(f"{name}: the validation split is empty")
    return [base[i][0] for i in range(n)]
