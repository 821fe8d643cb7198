"""DeiT's hard-label distillation (Touvron et al. 2021, "Training data-efficient image transformers & distillation
through attention", §5.2 / eq. in "Hard-label distillation"): the student's class head learns the true label (with
label smoothing, as the paper's true labels do), its distillation head learns the teacher's arg-max label for the
same augmented image, each loss weighted 1/2:

    L = 1/2 CE(Z_cls, y) + 1/2 CE(Z_dist, argmax Z_teacher)

At inference the two heads' logits are averaged (timm's ``VisionTransformerDistilled`` in eval mode). The teacher
is a trained lvmharness checkpoint (``train.py --distill_from CHECKPOINT``), frozen and in eval mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lvmharness.models.build import create_model, resolve
from lvmharness.train.checkpoint import CheckpointError, load_checkpoint


class DistillationLoss(nn.Module):
    """``forward(x, outputs, y)``: outputs is the student's (class logits, distillation logits) in training mode."""

    def __init__(self, base: nn.Module, teacher: nn.Module) -> None:
        super().__init__()
        self.base = base  # the true-label loss (cross-entropy with the run's label smoothing)
        self.teacher = teacher
        self.hard = nn.CrossEntropyLoss()  # the teacher's labels are hard and unsmoothed (§5.2)

    def forward(self, x: torch.Tensor, outputs: Any, y: torch.Tensor) -> torch.Tensor:
        if not isinstance(outputs, tuple) or len(outputs) != 2:
            raise TypeError("the student must return (class logits, distillation logits) in training mode")
        cls_logits, dist_logits = outputs  # (B, C) each
        with torch.no_grad():
            teacher_labels = self.teacher(x).argmax(dim=1)  # (B,)
        return 0.5 * self.base(cls_logits.float(), y) + 0.5 * self.hard(dist_logits.float(), teacher_labels)


def supports_distillation(model: nn.Module) -> bool:
    """A student with a distillation token: timm's VisionTransformerDistilled (``set_distilled_training``)."""
    return callable(getattr(model, "set_distilled_training", None))


def load_teacher(path: Path, *, num_classes: int, img_size: int, device: torch.device) -> tuple[nn.Module,
                                                                                                    dict[str, Any]]:
    """The teacher from an lvmharness checkpoint, checked against the student's class count and input size before
    anything is trained or written; returns (frozen model in eval mode, what the record says of it)."""
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        raise CheckpointError(exc.template.replace("{opt:resume}", "{opt:distill_from}"),
                              field="distill_from") from None
    have_classes, have_size = ckpt.get("num_classes"), ckpt.get("img_size")
    alias = ckpt.get("alias") or ckpt.get("model_name")
    if have_classes != num_classes:
        raise CheckpointError(
            f"{{opt:distill_from}} {path}: the teacher ({alias}) predicts {have_classes} classes, this run's data has "
            f"{num_classes}; a teacher must be trained on the same classes", field="distill_from")
    if have_size != img_size:
        raise CheckpointError(
            f"{{opt:distill_from}} {path}: the teacher ({alias}) was trained at {have_size} px, this run is at "
            f"{img_size} px; pass {{opt:img_size}} {have_size} or a teacher of this size", field="distill_from")
    try:
        with torch.random.fork_rng(devices=[]):  # the teacher's throwaway init must not move the student's seed
            teacher = create_model(resolve(str(alias)), img_size=int(have_size), num_classes=int(have_classes),
                                   device=device)
        teacher.load_state_dict(ckpt["model"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{{opt:distill_from}} {path}: its weights do not build {alias} "
                              f"({type(exc).__name__}: {str(exc)[:200]})", field="distill_from") from None
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    history = ckpt.get("history") or []
    info = {"distill_from": str(path), "teacher": str(alias), "teacher_model": ckpt.get("model_name"),
            "teacher_top1": history[-1].get("top1") if history else None, "distillation": "hard (DeiT §5.2)"}
    return teacher, info
