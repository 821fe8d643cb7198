"""Training (phase 1: pretraining, phase 2: fine-tuning): loop functions, checkpoints, distributed helpers and
the ``train.py`` / ``lvm train`` command line."""

from lvmharness.train.trainer import (
    CheckpointError,
    EpochStats,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    TrainingError,
    load_checkpoint,
    load_init_weights,
    main,
    save_checkpoint,
)

__all__ = [
    "CheckpointError", "EpochStats", "NonFiniteLossError", "TrainConfig", "Trainer", "TrainingError",
    "load_checkpoint", "load_init_weights", "main", "save_checkpoint",
]
