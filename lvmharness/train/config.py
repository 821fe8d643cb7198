"""What a training run is: ``TrainConfig``, its validation, and the command line built from its fields.

Every option of ``train.py`` is a field here, with its default and help written once; ``build_parser`` derives the
argparse options from the fields (type from the annotation, ``--flag`` for booleans, choices and help from the
field's metadata).
"""

from __future__ import annotations

import argparse
import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from lvmharness.core.errors import ConfigError, UserError
from lvmharness.core.parsing import MAX_BATCH_SIZE, MAX_IMG_SIZE, MAX_SEED, parse_float, parse_int, shorten
from lvmharness.core.vocab import LOW_PRECISION_NAMES
from lvmharness.runtime.data import DATASETS
from lvmharness.store.run_ids import validate_run_id

AMP_MODES = ("auto", *LOW_PRECISION_NAMES)


class TrainingError(UserError, RuntimeError):
    """Training stopped for a reason the user can act on; the message says which."""


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    model: str = _opt("vit", "vit|deit|swin|resnet, a size alias or any timm name")
    batch_size: int = _opt(64, "images per step and process; the global batch is batch_size x world size")
    lr: float | None = _opt(None, "peak learning rate; default 5e-4 for phase 1, 1e-4 for phase 2")
    epochs: int = _opt(1, "epochs to train (a resumed run continues up to this many)")
    output_dir: str = _opt("runs/train", "checkpoints and TensorBoard scalars")
    phase: int = _opt(1, "1: pretrain (default data ImageNet-1K), 2: fine-tune (default data CIFAR-100)",
                      choices=(1, 2))
    device: str = _opt("auto", "auto|cuda|cuda:N|cpu|mps")
    dataset: str | None = _opt(None, "default: imagenet for phase 1, cifar100 for phase 2", choices=DATASETS)
    data_dir: str = _opt("data", "where the datasets are")
    download: bool = _opt(False, "download CIFAR-100 with torchvision (needs a network)")
    img_size: int | None = _opt(None, "input size in pixels; default: the model's native size")
    workers: int = _opt(2, "data loader worker processes (0: load in the training process)")
    amp: str | None = _opt(None, "autocast with fp32 weights: bf16, fp16 (with gradient scaling) or auto (bf16 "
                                 "where the device runs it natively, else fp16); --amp alone means auto",
                           choices=AMP_MODES, const="auto")
    resume: str | None = _opt(None, "an lvmharness checkpoint.pt to continue from")
    init_checkpoint: str | None = _opt(None, "weights to start from: a phase-1 checkpoint, a timm state dict or "
                                             "a .safetensors file")
    distill_from: str | None = _opt(None, "a trained lvmharness checkpoint (e.g. a ladder CNN) as teacher: DeiT's "
                                          "hard-label distillation of a model with a distillation token")
    pretrained: bool = _opt(False, "timm hub weights for phase 2 (needs a network)")
    max_steps_per_epoch: int | None = _opt(None, "stop each epoch after this many steps (default: the whole split)")
    max_eval_steps: int | None = _opt(None, "evaluate on this many batches (default: the whole split)")
    seed: int = _opt(0, "seed of weights, data order and augmentation")
    weight_decay: float = _opt(0.05, "AdamW weight decay")
    warmup_epochs: float = _opt(1.0, "linear learning-rate warm-up, in epochs, before the cosine decay")
    label_smoothing: float = _opt(0.1, "label smoothing of the cross-entropy loss")
    synthetic_size: int = _opt(1024, "train images of --dataset synthetic")
    synthetic_classes: int = _opt(100, "classes of --dataset synthetic")
    results_dir: str = _opt("results", "result store for train_epoch / train_result records")
    run_id: str | None = _opt(None, "run folder name under results_dir (default: a new time-ordered id)")
    profile: bool = _opt(False, "write a torch.profiler trace of a few steps to <output_dir>/tb/profile "
                                "(separate, untimed pass; the experiment is unchanged)")

    def __post_init__(self) -> None:
        for name, (low, high) in INT_RANGES.items():
            if getattr(self, name) is not None:
                _in_range(name, getattr(self, name), low, high)
        if self.phase not in (1, 2):
            raise ConfigError(f"{{opt:phase}} must be 1 (pretrain) or 2 (fine-tune), got {self.phase}", field="phase")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"{{opt:lr}} must be a positive number, got {self.lr}", field="lr")
        for name in ("weight_decay", "warmup_epochs"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{{opt:{name}}} must be a finite number >= 0, got {value}", field=name)
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"{{opt:label_smoothing}} must be in [0, 1), got {self.label_smoothing}",
                              field="label_smoothing")
        if self.dataset is not None and self.dataset not in DATASETS:
            raise ConfigError(f"{{opt:dataset}} {self.dataset!r}: valid datasets are {', '.join(DATASETS)}",
                              field="dataset")
        if self.amp is not None and self.amp not in AMP_MODES:
            raise ConfigError(f"{{opt:amp}} {self.amp!r}: valid modes are {', '.join(AMP_MODES)}", field="amp")
        for name in ("output_dir", "results_dir", "data_dir"):
            if not str(getattr(self, name)).strip():
                raise ConfigError(f"{{opt:{name}}} is an empty path; name a folder, e.g. {_default(name)}",
                                  field=name)
        for name in ("resume", "init_checkpoint"):
            if getattr(self, name) is not None and not str(getattr(self, name)).strip():
                raise ConfigError(f"{{opt:{name}}} is an empty path; name a checkpoint file", field=name)
        if self.run_id is not None:
            try:
                validate_run_id(self.run_id)
            except ValueError as exc:
                raise ConfigError(f"{{opt:run_id}}: {exc}", field="run_id") from None

    @property
    def dataset_name(self) -> str:
        return self.dataset or ("imagenet" if self.phase == 1 else "cifar100")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (5e-4 if self.phase == 1 else 1e-4)


# The integer settings and their valid ranges (inclusive). The upper bounds keep every number inside what torch and
# numpy take (tensor sizes in int64, numpy's 32-bit seeds) so a typo is this one line, not a C++ backtrace.
INT_RANGES: dict[str, tuple[int, int]] = {
    "batch_size": (1, MAX_BATCH_SIZE),
    "epochs": (1, 1_000_000),
    "img_size": (1, MAX_IMG_SIZE),
    "workers": (0, 1024),
    "max_steps_per_epoch": (1, 2**40),
    "max_eval_steps": (1, 2**40),
    "seed": (0, MAX_SEED),
    "synthetic_size": (1, 2**31 - 1),  # a torch index of the dataset
    "synthetic_classes": (1, 1_000_000),
}


def _in_range(name: str, value: int, low: int, high: int) -> None:
    if value < low:
        raise ConfigError(f"{{opt:{name}}} must be >= {low}, got {value}", field=name)
    if value > high:
        raise ConfigError(f"{{opt:{name}}} must be <= {high:,}, got {shorten(str(value))}", field=name)


def _default(name: str) -> Any:
    return next(f.default for f in fields(TrainConfig) if f.name == name)


def _base_type(annotation: Any) -> type:
    """``int | None`` -> int; the parser's ``type=`` for a field."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return typing.cast(type, inner)
    return typing.cast(type, annotation)


def _arg_type(parse: Any, name: str) -> Any:
    """A ``lvmharness.core.parsing`` parser as an argparse type (its message instead of 'invalid int value')."""

    def typed(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    typed.__name__ = name
    return typed


# ASCII numbers only (int() and float() also read other scripts' digits); ranges are TrainConfig's.
_ARG_TYPES: dict[type, Any] = {int: _arg_type(parse_int, "int"), float: _arg_type(parse_float, "float")}


def build_parser(prog: str = "train.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Pretrain (phase 1) or fine-tune (phase 2) a vision model, "
                                "timing every epoch. Under torchrun, --batch_size is per process.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        meta, kind = f.metadata, _base_type(hints[f.name])
        assert f.default is not MISSING, f"TrainConfig.{f.name} needs a default"
        if kind is bool:
            p.add_argument(f"--{f.name}", action="store_true", help=meta["help"])
            continue
        kwargs: dict[str, Any] = {"type": _ARG_TYPES.get(kind, kind), "default": f.default, "help": meta["help"]}
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        if "const" in meta:
            kwargs.update(nargs="?", const=meta["const"])
        p.add_argument(f"--{f.name}", **kwargs)
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
