"""Training (phase 1: pretraining, phase 2: fine-tuning), in the shape of timm's train script.

* ``config``: ``TrainConfig``, every option once; the command line is built from its fields.
* ``loop``: plain functions ``train_one_epoch(...) -> EpochStats``, ``evaluate(...)``, ``train_step``, the schedule.
* ``run``: building the pieces from a config (loaders, model, optimizer, AMP, resume) into a ``TrainRun``.
* ``fit``: epochs with outputs to sinks (``sinks``: checkpoint, records, TensorBoard, console); the trace pass.
* ``checkpoint``: save/load, starting weights, random-generator state. ``distributed``: torchrun helpers.

The command line (``train.py`` / ``lvm train``) is :mod:`lvmharness.commands.train`, a front end above this.
"""

from lvmharness.train.checkpoint import CheckpointError, load_checkpoint, load_init_weights, save_checkpoint
from lvmharness.train.config import TrainConfig, TrainingError, build_parser
from lvmharness.train.fit import fit, trace_steps, train
from lvmharness.train.loop import EpochStats, EvalStats, NonFiniteLossError, SteadyState, evaluate, train_one_epoch
from lvmharness.train.run import TrainRun, build_run

__all__ = [
    "CheckpointError",
    "EpochStats",
    "EvalStats",
    "NonFiniteLossError",
    "SteadyState",
    "TrainConfig",
    "TrainRun",
    "TrainingError",
    "build_parser",
    "build_run",
    "evaluate",
    "fit",
    "load_checkpoint",
    "load_init_weights",
    "save_checkpoint",
    "trace_steps",
    "train",
    "train_one_epoch",
]
