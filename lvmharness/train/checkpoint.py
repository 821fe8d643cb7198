"""Checkpoints: everything needed to resume exactly (model, optimizer, schedule, gradient scaler, epoch and every
random generator the run draws from), written atomically and read with ``weights_only`` (no code runs from the
file); and starting weights from any timm-compatible state dict, lvmharness checkpoint or safetensors file."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lvmharness.core.fileio import atomic_write
from lvmharness.train.config import TrainingError

CHECKPOINT_FORMAT = "lvmharness.checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
# What resuming needs; a file without one of these can still give its weights through --init_checkpoint.
REQUIRED_KEYS = ("model", "optimizer", "scheduler", "epoch", "rng")


class CheckpointError(TrainingError):
    def __init__(self, template: str, *, field: str | None = "resume") -> None:
        super().__init__(template, field=field)


def rng_state(device: torch.device) -> dict[str, Any]:
    """The state of every generator a training step draws from: torch's CPU generator (weights init, CPU
    augmentation, dropout on CPU), Python's and NumPy's, and the generator of the device in use (dropout and
    drop-path on the accelerator). Only that device's: a resume may see fewer devices than the saving run."""
    import numpy as np

    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype("int64")), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
    }
    if device.type == "cuda":
        state["device"] = {"type": "cuda", "state": torch.cuda.get_rng_state(device)}
    elif device.type == "mps":
        state["device"] = {"type": "mps", "state": torch.mps.get_rng_state()}
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype("uint32"), n["pos"], n["has_gauss"], n["gauss"]))
    saved = state.get("device")
    if saved is None and device.type == "cuda" and state.get("cuda"):
        # Files written before the per-device format held get_rng_state_all(): take this device's entry.
        states = state["cuda"]
        index = device.index if device.index is not None else torch.cuda.current_device()
        saved = {"type": "cuda", "state": states[index]} if index < len(states) else None
    if saved is None or saved["type"] != device.type:
        return  # saved on another kind of device: its generator has no counterpart here
    if device.type == "cuda":
        torch.cuda.set_rng_state(saved["state"], device)
    elif device.type == "mps":
        torch.mps.set_rng_state(saved["state"])


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and every device), Python and NumPy: called once by the program that runs the training,
    never as a side effect of building a model or a loader."""
    import numpy as np

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomically: a reader (or a crash) sees the previous complete file or the new complete file."""
    atomic_write(path, lambda fh: torch.save(payload, fh))


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load an lvmharness training checkpoint (weights_only: no code runs from the file)."""
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"checkpoint {p} is a folder; name the checkpoint file in it, e.g. {p / CHECKPOINT_NAME}")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(
            f"checkpoint {p} is corrupt or not a PyTorch file ({type(exc).__name__}: {str(exc)[:200]}); "
            "it was left untouched. Resume from another checkpoint or start without {opt:resume}."
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p} is not an lvmharness training checkpoint (use {{opt:init_checkpoint}} for weights)")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{p} has checkpoint version {ckpt.get('version')}; this lvmharness reads "
                              f"{CHECKPOINT_VERSION}")
    return dict(ckpt)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{{opt:init_checkpoint}} {path} does not exist", field="init_checkpoint")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is corrupt or not a weights file ({type(exc).__name__}: {str(exc)[:200]})",
                              field="init_checkpoint") from exc
    if isinstance(sd, dict) and sd.get("format") == CHECKPOINT_FORMAT:
        sd = sd["model"]
    elif isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    elif isinstance(sd, dict) and isinstance(sd.get("model"), dict):
        sd = sd["model"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors", field="init_checkpoint")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_init_weights(model: nn.Module, path: Path) -> dict[str, Any]:
    """Load any timm-compatible state dict, lvmharness checkpoint or safetensors file into ``model``; a classifier
    head of another size is replaced (left at its fresh init), position embeddings of another size resampled."""
    sd = read_weights(path)
    own = model.state_dict()
    classifier = str(getattr(model, "pretrained_cfg", {}).get("classifier", "head"))
    dropped = []
    for key in list(sd):
        if key in own and sd[key].shape != own[key].shape:
            if key.startswith(classifier + ".") or key == classifier:
                dropped.append(key)
                del sd[key]
            elif key.endswith("pos_embed") and sd[key].dim() == 3:
                from timm.layers import resample_abs_pos_embed

                prefix = getattr(model, "num_prefix_tokens", 1)
                grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
                if grid is None:
                    raise CheckpointError(f"cannot resample {key} for {type(model).__name__}",
                                          field="init_checkpoint")
                sd[key] = resample_abs_pos_embed(sd[key], new_size=list(grid), num_prefix_tokens=prefix)
            else:
                raise CheckpointError(f"{path}: {key} has shape {tuple(sd[key].shape)}, the model wants "
                                      f"{tuple(own[key].shape)}: not weights for this architecture",
                                      field="init_checkpoint")
    result = model.load_state_dict(sd, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(classifier)]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{path} does not fit {type(model).__name__}: missing {missing[:5]}, unexpected "
            f"{list(result.unexpected_keys)[:5]}", field="init_checkpoint"
        )
    return {"init_checkpoint": str(path), "head_replaced": bool(dropped), "head_keys": dropped}




def payload(*, epochs_done: int, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
            scaler: torch.amp.GradScaler, device: torch.device, meta: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint of a run after ``epochs_done`` epochs; ``meta`` adds identity (model_name, img_size,
    num_classes, ...) that :func:`restore` checks against the resuming run."""
    return {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": epochs_done,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(), "rng": rng_state(device), **meta,
    }


def check_compatible(ckpt: dict[str, Any], path: Path, expect: dict[str, Any]) -> None:
    """A checkpoint fit to resume this run: every key resuming needs, and the same model, input size and class
    count (each mismatch named with the option that would make the run match)."""
    missing = [key for key in REQUIRED_KEYS if key not in ckpt]
    if missing:
        raise CheckpointError(
            f"{path} cannot be resumed: it has no {', '.join(missing)}. To start from its weights only, pass it "
            "as {opt:init_checkpoint} instead of {opt:resume}."
        )
    for key, want in expect.items():
        have = ckpt.get(key)
        if have != want:
            option = "model" if key == "model_name" else key
            raise CheckpointError(
                f"{path} was saved with {key} {have}, this run has {want}: resume with the settings it was saved "
                f"with ({{opt:{option}}} {have}), or start a new run from its weights with {{opt:init_checkpoint}}",
                field=option,
            )


def restore(ckpt: dict[str, Any], path: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: Any, scaler: torch.amp.GradScaler, device: torch.device) -> None:
    """Load a checked checkpoint into the run's objects and generators."""
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path} does not fit this run ({type(exc).__name__}: {str(exc)[:300]})") from exc
    saved_scaler = ckpt.get("scaler") or {}
    # A scaler saved disabled (fp32 or bf16 run) has an empty state; GradScaler.load_state_dict({}) raises on an
    # enabled scaler, which then simply starts from its initial scale (2**16) as a fresh fp16 run does.
    if saved_scaler:
        scaler.load_state_dict(saved_scaler)
    set_rng_state(ckpt["rng"], device)
