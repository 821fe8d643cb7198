"""The plugin's options, parsed once into one typed object.

Every ``--lvm-*`` option is declared here with an argparse ``type=`` function, so a bad value (``--lvm-budget-s
nan``, ``--lvm-batch-sizes 0``, ``--lvm-dtype fp8``) is pytest's usage error before anything is collected, naming
the option and what is valid; nothing downstream re-parses a string. Torch-free and pytest-free: importing the
plugin costs a project that merely has lvmharness installed nothing.

Adding an option: one ``add_option(name, field, ...)`` call below and one field of ``LvmConfig``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from lvmharness.bench.matrix import PROFILES
from lvmharness.bench.shard import Shard, parse_shard
from lvmharness.core.argtypes import argument_type
from lvmharness.core.errors import BadValueError
from lvmharness.core.parsing import (
    parse_batch_sizes,
    parse_bytes,
    parse_img_sizes,
    parse_int,
    parse_list,
    parse_output_file,
    parse_output_folder,
    parse_seconds,
    shorten,
)
from lvmharness.core.vocab import DTYPE_NAMES
from lvmharness.models.ladder import LADDER_CONFIGS
from lvmharness.store.run_ids import run_id_arg

T = TypeVar("T")

TRAIN_DATASETS = ("auto", "synthetic", "cifar100", "imagenet", "fashion_mnist")
INSTANCE_DATASETS = ("synthetic", "cifar100", "imagenet", "fashion_mnist")
VALID_DEVICES = "auto, cpu, cuda, cuda:N, mps"
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def argtype(parse: Callable[[str], T], name: str) -> Callable[[str], T]:
    """Wrap a parser raising ValueError into an argparse type whose message argparse shows as is."""
    return argument_type(parse, name)


def _models(text: str) -> tuple[str, ...]:
    return tuple(parse_list(text))


def _devices(text: str) -> tuple[str, ...]:
    out = []
    for item in parse_list(text):
        spec = item.lower()
        if not _DEVICE.fullmatch(spec):
            raise BadValueError(f"unknown device {item!r}: valid devices are {VALID_DEVICES}")
        out.append(spec)
    return tuple(out)


def _dtypes(text: str) -> tuple[str, ...]:
    out = parse_list(text)
    for item in out:
        if item not in DTYPE_NAMES:
            raise BadValueError(f"unknown dtype {item!r}: valid dtypes are {', '.join(DTYPE_NAMES)}")
    return tuple(out)


def _batch_sizes(text: str) -> tuple[int, ...]:
    return tuple(parse_batch_sizes(text))


def _img_sizes(text: str) -> tuple[int, ...]:
    return tuple(parse_img_sizes(text))


def _steps(text: str) -> int:
    try:
        value = parse_int(text)
    except ValueError:
        raise BadValueError(f"steps must be a whole number in 1..1000, got {shorten(text)!r}") from None
    if not 1 <= value <= 1000:
        raise BadValueError(f"steps must be in 1..1000, got {value}")
    return value


def add_options(group: Any) -> None:
    """Register every ``--lvm-*`` option on a pytest option group."""

    def add_option(name: str, field: str, **kwargs: Any) -> None:
        group.addoption(name, dest=f"lvm_{field}", **kwargs)

    add_option("--lvm-profile", "profile", default="default", choices=sorted(PROFILES),
               help="case matrix: smoke (CI, seconds), default (2-core CPU, the four original models), full (GPUs)")
    add_option("--lvm-models", "models", type=argtype(_models, "model list"), default=None,
               help="comma list of aliases or timm names (overrides the profile; native size unless "
                    "--lvm-img-sizes)")
    add_option("--lvm-device", "devices", type=argtype(_devices, "device list"), default="auto",
               help=f"comma list of {VALID_DEVICES.replace(', ', '|')} (unavailable ones are skipped with the "
                    "reason)")
    add_option("--lvm-dtype", "dtypes", type=argtype(_dtypes, "dtype list"), default=None,
               help=f"comma list of {'|'.join(DTYPE_NAMES)} (default: the profile's; fp16 not on cpu)")
    add_option("--lvm-channels-last", "channels_last", action="store_true",
               help="run every case in channels_last memory format")
    add_option("--lvm-compile", "compile_backend", nargs="?", const="inductor", default=None, metavar="BACKEND",
               help="torch.compile every model (backend: inductor unless given); compile time recorded apart")
    add_option("--lvm-train-dataset", "train_dataset", default="auto", choices=TRAIN_DATASETS,
               help="data of the training benches; auto = cifar100 if <data-dir>/cifar-100-python exists, else "
                    "synthetic")
    add_option("--lvm-data-dir", "data_dir", type=Path, default="data",
               help="where the training/instance benches look for datasets")
    add_option("--lvm-instance-data", "instance_data", default="synthetic", choices=INSTANCE_DATASETS,
               help="images of the per-instance latency bench (validation split, decoded, untransformed)")
    add_option("--lvm-mem-limit", "mem_limit_bytes", type=argtype(parse_bytes, "memory size"), default=None,
               metavar="SIZE", help="memory cap for each isolated memory case, e.g. 2GiB, 512MiB (enforced in the "
                                    "child)")
    add_option("--lvm-batch-sizes", "batch_sizes", type=argtype(_batch_sizes, "batch sizes"), default=None,
               help="comma list of positive integers, e.g. 1,8,32")
    add_option("--lvm-img-sizes", "img_sizes", type=argtype(_img_sizes, "image sizes"), default=None,
               help="comma list of square input sides in px, e.g. 224,384")
    # The default is a Path, which argparse does not pass through ``type``: an unrelated pytest run in a read-only
    # folder is not refused; the plugin checks the default once it collects an lvm bench.
    add_option("--lvm-out", "out", type=argtype(parse_output_folder, "output folder"), default=Path("results"),
               help="folder that receives <run-id>/results.json and env.json")
    add_option("--lvm-run-id", "run_id", type=run_id_arg, default=None,
               help="run id (default: UTC time + random suffix)")
    add_option("--lvm-trace", "trace", action="store_true",
               help="after timing, trace each case with torch.profiler (separate, untimed pass) into "
                    "<run>/tb/<case> with TensorBoard scalars of its key values")
    add_option("--lvm-trace-steps", "trace_steps", type=argtype(_steps, "steps"), default=3, metavar="N",
               help="profiled steps per trace (default 3: a few MB per case; more steps, a larger trace)")
    add_option("--lvm-layers", "layers", action="store_true",
               help="after timing, measure time per module of each latency case (separate pass) as a layer_times "
                    "record; the tree goes to <run>/layers/<case>.json")
    add_option("--lvm-shard", "shard", type=argtype(parse_shard, "shard"), default=None, metavar="K/N",
               help="run shard K of N: a deterministic, disjoint, cost-balanced share of the selected cases (the N "
                    "shards together run them all)")
    add_option("--lvm-shard-plan", "shard_plan", type=argtype(parse_output_file, "output file"), default=None,
               metavar="FILE",
               help="with --lvm-shard: write the plan (each case's expected cost and shard) as JSON")
    add_option("--lvm-accuracy", "accuracy", default=None, choices=LADDER_CONFIGS,
               help="run benches/bench_accuracy.py: the accuracy ladder of `lvm accuracy --config CONFIG`, end to "
                    "end (minutes; skipped without this option)")
    add_option("--lvm-budget-s", "budget_s", type=argtype(parse_seconds, "seconds"), default=None,
               help="seconds of measured rounds per case (finite, >= 0; default: the profile's)")


@dataclass(frozen=True)
class LvmConfig:
    """The parsed ``--lvm-*`` options (``None``: not given, the profile decides)."""

    profile: str = "default"
    models: tuple[str, ...] | None = None
    devices: tuple[str, ...] = ("auto",)
    dtypes: tuple[str, ...] | None = None
    channels_last: bool = False
    compile_backend: str | None = None  # None: eager
    train_dataset: str = "auto"
    data_dir: Path = Path("data")
    instance_data: str = "synthetic"
    mem_limit_bytes: int | None = None
    batch_sizes: tuple[int, ...] | None = None
    img_sizes: tuple[int, ...] | None = None
    out: Path = Path("results")
    run_id: str | None = None
    trace: bool = False
    trace_steps: int = 3
    layers: bool = False
    budget_s: float | None = None
    shard: Shard | None = None
    shard_plan: Path | None = None
    accuracy: str | None = None  # None: the accuracy ladder's bench skips

    @classmethod
    def from_namespace(cls, ns: Any) -> LvmConfig:
        """From pytest's ``config.option`` (or an argparse namespace), where the type functions already ran."""
        return cls(**{f.name: getattr(ns, f"lvm_{f.name}") for f in fields(cls)})
