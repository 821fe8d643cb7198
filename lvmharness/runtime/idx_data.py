"""Real small image datasets that ship in packages: Fashion-MNIST from its original IDX files and scikit-learn's
bundled handwritten digits.

Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, arXiv:1708.07747): 60,000 training and 10,000 test images, 28x28
grey, 10 classes, in the IDX format of LeCun's MNIST page, gzipped or not. Debian's ``dataset-fashion-mnist``
installs them under ``/usr/share/datasets/fashion-mnist/``; a copy under ``<data_dir>/fashion-mnist/`` wins.

IDX format (yann.lecun.com/exdb/mnist, "FILE FORMATS FOR THE MNIST DATABASE"): a big-endian 32-bit magic number
whose third byte is the element type (0x08: unsigned byte) and fourth byte the number of dimensions, then one
big-endian 32-bit size per dimension, then the data in row-major order. Images are 0x00000803 (N, 28, 28), labels
0x00000801 (N,). A file whose length differs from what its header announces is refused (truncated or foreign).

Grey to the model's channels: each image is replicated to 3 identical channels. Every path of the harness that
counts or times a model (``lvm flops``, ``lvm memory``, the benches, the architecture page) feeds it 3-channel
inputs, so a ladder model trained here is exactly the model those tools measure, and a checkpoint moves between
this data and RGB data (phase 2) without surgery on its stem. The cost is the first layer's MACs on 3 identical
channels instead of 1 (for a 4x4 patch embedding of 64 dims at 32 px: 64 tokens x 64 x 32 extra MACs, 0.13 MMACs).

Size: 28 px images are padded by 2 px of background on each side to 32 px (exact pixels, no interpolation: every
ladder model's stride divides 32); any other input size is then a bilinear resize of the padded image.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from lvmharness.core.errors import BadValueError, UserError

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FOLDER = "fashion-mnist"
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
APT_HINT = "apt-get install dataset-fashion-mnist"
IMAGE_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABEL_MAGIC = 0x00000801  # unsigned byte, 1 dimension
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# Mean and standard deviation of the 60,000 training images' pixels scaled to [0, 1] (computed from the IDX files
# installed by dataset-fashion-mnist; tests/runtime/test_fashion_mnist.py recomputes them there when the package is
# present).
FMNIST_MEAN = 0.2860
FMNIST_STD = 0.3530
PAD_PX = 2  # 28 + 2 x 2 = 32


class IdxError(UserError):
    """A dataset file that is missing, truncated or not in the IDX format; the message names the path."""

    def __init__(self, template: str, *, field: str | None = "data_dir") -> None:
        super().__init__(template, field=field)


def _expected() -> str:
    return ", ".join(f"{name}[.gz]" for name in FILES.values())


def read_idx(path: Path, magic: int) -> torch.Tensor:
    """The uint8 array of an IDX file (gzipped when it starts with gzip's magic bytes 1f 8b)."""
    where = f"{path}: expected the Fashion-MNIST IDX files {_expected()} (reinstall with `{APT_HINT}`)"
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError; a truncated stream raises EOFError
        raise IdxError(f"cannot read {where} ({type(exc).__name__}: {exc})") from None
    if len(raw) < 4:
        raise IdxError(f"{path} is truncated ({len(raw)} bytes, no IDX header); {where}")
    (found,) = struct.unpack(">I", raw[:4])
    if found != magic:
        raise IdxError(f"{path} has magic number 0x{found:08x}, not 0x{magic:08x}: not an IDX file of this kind; "
                       f"{where}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxError(f"{path} is truncated inside its header; {where}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    size = 1
    for d in dims:
        size *= d
    if len(raw) != header + size:
        raise IdxError(f"{path}: the header announces {' x '.join(map(str, dims))} = {size} bytes of data, the "
                       f"file holds {len(raw) - header} (truncated or corrupt); {where}")
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(dims)


def locate(data_dir: Path | str | None) -> Path:
    """The folder with the four files: ``<data_dir>/fashion-mnist`` if it exists (then it must be complete),
    else Debian's ``/usr/share/datasets/fashion-mnist``."""
    candidates = [Path(data_dir) / FOLDER] if data_dir is not None else []
    for folder in candidates:
        if folder.is_dir():
            return folder
    if SYSTEM_DIR.is_dir():
        return SYSTEM_DIR
    looked = " or ".join(str(p) for p in [*candidates, SYSTEM_DIR])
    raise IdxError(f"Fashion-MNIST not found in {looked}: expected the IDX files {_expected()}; install them with "
                   f"`{APT_HINT}` or put them in <data_dir>/{FOLDER}/")


def _file(folder: Path, name: str) -> Path:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    raise IdxError(f"{folder / name}[.gz] is missing: expected the IDX files {_expected()} in {folder}; install "
                   f"them with `{APT_HINT}`")


def load_split(folder: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 28, 28) uint8, labels (N,) int64) of one split, checked against each other."""
    prefix = "train" if train else "test"
    images = read_idx(_file(folder, FILES[f"{prefix}_images"]), IMAGE_MAGIC)
    labels = read_idx(_file(folder, FILES[f"{prefix}_labels"]), LABEL_MAGIC).long()
    if images.shape[0] != labels.shape[0]:
        raise IdxError(f"{folder}: {images.shape[0]} {prefix} images but {labels.shape[0]} labels; {_expected()} "
                       f"must come from one release (`{APT_HINT}`)")
    if labels.numel() and int(labels.max()) >= len(CLASSES):
        raise IdxError(f"{folder}: a {prefix} label is {int(labels.max())}; Fashion-MNIST has 10 classes (0-9)")
    return images, labels


class GreyImages(Dataset[tuple[torch.Tensor, int]]):
    """Grey uint8 images (N, H, W) as normalized 3-channel float tensors of ``img_size``² (see the module's note),
    with optional augmentation: a random shift of up to ``PAD_PX`` px and a horizontal flip, drawn from torch's
    global generator (seeded by the training program; the DataLoader reseeds its workers)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, img_size: int = 32, augment: bool = False,
                 mean: float = FMNIST_MEAN, std: float = FMNIST_STD, pad: int = PAD_PX) -> None:
        if images.dim() != 3 or images.shape[0] != labels.shape[0]:
            raise BadValueError(f"need (N, H, W) images and (N,) labels, got {tuple(images.shape)}, "
                             f"{tuple(labels.shape)}")
        self.images, self.labels = images, labels
        self.img_size, self.augment, self.mean, self.std, self.pad = img_size, augment, mean, std, pad
        self.transform: Any = "tensor"  # raw_samples sets None for decoded, untransformed images
        self.targets = labels.tolist()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img = self.images[index]
        label = self.targets[index]
        if self.transform is None:
            from PIL import Image

            return Image.fromarray(img.numpy(), mode="L").convert("RGB"), label
        x = img.float().div_(255.0)[None]  # (1, H, W) in [0, 1]
        p = self.pad
        if self.augment:
            x = torch.nn.functional.pad(x, (2 * p, 2 * p, 2 * p, 2 * p))
            dy, dx = (int(v) for v in torch.randint(0, 2 * p + 1, (2,)))
            h, w = img.shape
            x = x[:, dy:dy + h + 2 * p, dx:dx + w + 2 * p]
            if bool(torch.rand(()) < 0.5):
                x = x.flip(-1)
        else:
            x = torch.nn.functional.pad(x, (p, p, p, p))
        if x.shape[-1] != self.img_size:
            x = torch.nn.functional.interpolate(x[None], size=(self.img_size, self.img_size), mode="bilinear",
                                                align_corners=False, antialias=True)[0]
        x = (x - self.mean) / self.std
        return x.expand(3, -1, -1).contiguous(), label  # (3, img_size, img_size)


def stratified_subset(labels: torch.Tensor, per_class: int, seed: int = 0) -> list[int]:
    """The first ``per_class`` indices of each class in one seeded permutation, in that permutation's order: a
    fixed, balanced subset (the quick configuration's)."""
    order = torch.randperm(labels.shape[0], generator=torch.Generator().manual_seed(seed)).tolist()
    taken: dict[int, int] = {}
    out = []
    for i in order:
        c = int(labels[i])
        if taken.get(c, 0) < per_class:
            taken[c] = taken.get(c, 0) + 1
            out.append(i)
    return out


@dataclass
class GreySplits:
    train: GreyImages
    val: GreyImages
    num_classes: int
    source: str


def fashion_mnist(data_dir: Path | str | None, *, img_size: int = 32, augment: bool = True,
                  train_subset: int | None = None, seed: int = 0) -> GreySplits:
    """Fashion-MNIST's training split (or a class-balanced subset of ``train_subset`` images) and its 10,000 test
    images. Every file is read and checked before anything else happens."""
    folder = locate(data_dir)
    tr_x, tr_y = load_split(folder, train=True)
    te_x, te_y = load_split(folder, train=False)
    source = f"{folder} (Fashion-MNIST IDX: {len(tr_y)} train / {len(te_y)} test)"
    if train_subset is not None and train_subset < len(tr_y):
        idx = torch.tensor(stratified_subset(tr_y, max(1, train_subset // len(CLASSES)), seed))
        tr_x, tr_y = tr_x[idx], tr_y[idx]
        source += f", class-balanced subset of {len(tr_y)} train images (seed {seed})"
    return GreySplits(GreyImages(tr_x, tr_y, img_size=img_size, augment=augment),
                      GreyImages(te_x, te_y, img_size=img_size), len(CLASSES), source)


# scikit-learn's digits (the UCI "Optical Recognition of Handwritten Digits" test set; 1,797 images of 8x8, values
# 0-16): upsampled bilinearly to 28 px so they take Fashion-MNIST's path (pad to 32, same normalization).
DIGITS_TRAIN_SHARE = 0.75  # scikit-learn's train_test_split default test_size 0.25


def digits(*, img_size: int = 32, seed: int = 0) -> GreySplits:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UserError("the digits dataset needs scikit-learn: pip install 'scikit-learn>=1.3'", field=None) from None
    bunch: Any = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32) / 16.0  # (1797, 8, 8) in [0, 1]
    x = torch.nn.functional.interpolate(x[:, None], size=(28, 28), mode="bilinear", align_corners=False)[:, 0]
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    cut = round(DIGITS_TRAIN_SHARE * len(labels))
    tr, te = order[:cut], order[cut:]
    return GreySplits(GreyImages(images[tr], labels[tr], img_size=img_size),
                      GreyImages(images[te], labels[te], img_size=img_size), 10,
                      f"scikit-learn load_digits: {len(tr)} train / {len(te)} test (seed {seed}), 8x8 upsampled to 28")
