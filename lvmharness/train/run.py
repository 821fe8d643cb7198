"""Building a training run from a ``TrainConfig``: device, data, loaders, model, optimizer and schedule, AMP, and
the resume. Building touches no global random state and writes nothing; seeding is the caller's decision
(``checkpoint.seed_everything``), as in timm's train script."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler, Subset

from lvmharness.core.errors import ConfigError
from lvmharness.core.outputs import OutputPathError, check_output_folder
from lvmharness.models.aliases import ModelSpec
from lvmharness.models.build import create_model, resolve
from lvmharness.models.ladder import DISTILLED
from lvmharness.runtime import data as datamod
from lvmharness.runtime.execution import auto_amp_dtype, check_dtype_mode
from lvmharness.store.run_ids import new_run_id
from lvmharness.train import checkpoint, distributed
from lvmharness.train.config import TrainConfig
from lvmharness.train.distill import DistillationLoss, load_teacher, supports_distillation
from lvmharness.train.loop import cosine_with_warmup


def check_output_dir(path: Path | str, option: str) -> Path:
    """Fail before any work when ``path`` cannot become a writable folder (a file in the way, no write access),
    creating nothing."""
    try:
        return check_output_folder(path, what="folder")
    except OutputPathError as exc:
        raise ConfigError(f"{{opt:{option}}}: {exc}", field=option) from None


def check_input_file(path: Path | str, option: str) -> None:
    """A checkpoint or weights file named by ``option`` exists and is a file (a folder gets its own advice)."""
    p = Path(path)
    if p.is_dir():
        hint = p / "checkpoint.pt"
        raise ConfigError(f"{{opt:{option}}} {p} is a folder; name the file in it"
                          + (f", e.g. {hint}" if hint.is_file() else ""), field=option)
    if not p.is_file():
        raise ConfigError(f"{{opt:{option}}} {p} does not exist", field=option)


def resolve_amp(mode: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--amp MODE``: bf16 or fp16 as asked; ``auto`` takes bf16 where the device runs it
    natively (CPU, MPS, CUDA compute capability >= 8.0), else fp16. ``including_emulation=False``: pre-Ampere
    GPUs report bf16 as supported through emulation, far slower than their fp16 tensor cores."""
    if mode is None:
        return None
    if mode == "auto":
        mode = "bf16" if auto_amp_dtype(device) == torch.bfloat16 else "fp16"
    try:
        return check_dtype_mode(f"amp_{mode}", device)[1]
    except RuntimeError as exc:  # fp16 on the CPU is refused: emulated kernels
        raise ConfigError(f"{{opt:amp}} {mode}: {exc}", field="amp") from exc


def grad_scaler(device: torch.device, amp_dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """Loss scaling where gradients are fp16 (their exponent range loses small gradients); bf16 has fp32's range."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)


def dtype_name(amp_dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "amp_bf16", torch.float16: "amp_fp16"}[amp_dtype]


def build_loader(ds: Dataset[Any], *, batch_size: int, workers: int, seed: int, device: torch.device,
                 dist: distributed.Dist = distributed.Dist(), train: bool = True,  # noqa: B008
                 num_samples: int | None = None) -> DataLoader[Any]:
    """Training: shuffled (a DistributedSampler under torchrun), full batches only; ``num_samples`` draws that
    many images, going round the dataset as often as needed (a bounded run longer than one pass). Evaluation: in
    order, each process a disjoint shard with no padding, so counts are exact. Workers are started per epoch (not
    persistent): each epoch's worker seeds then derive from that epoch's generator seed (see ``set_epoch``)."""
    gen = torch.Generator().manual_seed(seed)
    sampler: Sampler[Any] | None = None
    if num_samples is not None and not dist.enabled:
        sampler = RandomSampler(ds, num_samples=num_samples, generator=gen)  # type: ignore[arg-type]
    elif dist.enabled and train:
        sampler = DistributedSampler(ds, num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=seed,
                                     drop_last=True)
    elif dist.enabled:
        ds = Subset(ds, list(range(dist.rank, len(ds), dist.world)))  # type: ignore[arg-type]
    return DataLoader(ds, batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler,
                      num_workers=workers, drop_last=train, pin_memory=device.type == "cuda", generator=gen)


def set_epoch(loader: DataLoader[Any], epoch: int, seed: int) -> None:
    """Make epoch ``epoch``'s order and worker seeds a function of (seed, epoch) alone, as
    ``DistributedSampler.set_epoch`` does: a resumed run replays exactly the epochs an uninterrupted one runs."""
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(seed + epoch)


def build_optimizer(model: nn.Module, *, lr: float, weight_decay: float, warmup_steps: int,
                    total_steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (Loshchilov & Hutter 2019) with a per-step schedule: linear warm-up, then cosine to zero."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(warmup_steps, total_steps))


@dataclass
class TrainRun:
    """Everything a run trains with; ``start_epoch`` and ``history`` come from a resumed checkpoint."""

    cfg: TrainConfig
    dist: distributed.Dist
    device: torch.device
    spec: ModelSpec
    img_size: int
    splits: datamod.DataSplits
    model: nn.Module  # the module itself
    net: nn.Module  # what the loop calls: the module, or its DDP wrapper under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    amp_dtype: torch.dtype | None
    train_loader: DataLoader[Any]
    steps_per_epoch: int
    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    init_info: dict[str, Any] = field(default_factory=dict)
    resumed_run_id: str | None = None
    run_id: str | None = None  # the results folder's run: the configured one, the resumed run's, or a new one

    @property
    def out(self) -> Path:
        return Path(self.cfg.output_dir)

    @property
    def checkpoint_path(self) -> Path:
        return self.out / checkpoint.CHECKPOINT_NAME

    @property
    def global_batch(self) -> int:
        return self.cfg.batch_size * self.dist.world

    @property
    def dtype_name(self) -> str:
        return dtype_name(self.amp_dtype)

    def identity(self) -> dict[str, Any]:
        """What the checkpoint must match to be resumed into this run."""
        return {"model_name": self.spec.timm_name, "img_size": self.img_size, "num_classes": self.splits.num_classes}

    def checkpoint(self, epochs_done: int, run_id: str | None) -> dict[str, Any]:
        meta = {**self.identity(), "alias": self.cfg.model, "history": self.history, "run_id": run_id,
                "config": {k: v for k, v in asdict(self.cfg).items() if v is not None}}
        return checkpoint.payload(epochs_done=epochs_done, model=self.model, optimizer=self.optimizer,
                                  scheduler=self.scheduler, scaler=self.scaler, device=self.device, meta=meta)

    def eval_loader(self) -> DataLoader[Any]:
        return build_loader(self.splits.val, batch_size=self.cfg.batch_size, workers=self.cfg.workers,
                            seed=self.cfg.seed, device=self.device, dist=self.dist, train=False)


def _steps_per_epoch(cfg: TrainConfig, loader: DataLoader[Any], world: int) -> int:
    steps = len(loader)
    if steps == 0:
        hint = " or raise {opt:synthetic_size}" if cfg.dataset_name == "synthetic" else ""
        raise ConfigError(
            f"{{opt:batch_size}} {cfg.batch_size} x {world} process(es) is more than the "
            f"{len(loader.dataset)} training images: no full batch, so no step would run. "  # type: ignore[arg-type]
            f"Lower {{opt:batch_size}}{hint}.", field="batch_size")
    return min(steps, cfg.max_steps_per_epoch or steps)


def build_run(cfg: TrainConfig, *, device: torch.device, dist: distributed.Dist = distributed.Dist(),  # noqa: B008
              splits: datamod.DataSplits | None = None) -> TrainRun:
    """Build the run on ``device`` (from ``distributed.init``); ``splits`` overrides the dataset (tests, your data)."""
    spec = resolve(cfg.model)
    img_size = cfg.img_size or spec.default_img_size
    splits = splits or datamod.build(
        cfg.dataset_name, data_dir=cfg.data_dir, img_size=img_size, download=cfg.download and dist.main,
        synthetic_size=cfg.synthetic_size, synthetic_classes=cfg.synthetic_classes, seed=cfg.seed)
    loader = build_loader(splits.train, batch_size=cfg.batch_size, workers=cfg.workers, seed=cfg.seed,
                          device=device, dist=dist)
    steps = _steps_per_epoch(cfg, loader, dist.world)
    amp_dtype = resolve_amp(cfg.amp, device)
    model = create_model(spec, img_size=img_size, num_classes=splits.num_classes, device=device,
                         pretrained=cfg.pretrained and cfg.phase == 2)
    init_info: dict[str, Any] = {}
    if cfg.init_checkpoint:
        init_info = checkpoint.load_init_weights(model, Path(cfg.init_checkpoint))
        model.to(device)
    criterion: nn.Module = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    if cfg.distill_from:
        criterion, teacher_info = _distillation(cfg, model, criterion, img_size, splits.num_classes, device)
        init_info.update(teacher_info)
    net: nn.Module = model
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer, scheduler = build_optimizer(model, lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                           warmup_steps=round(cfg.warmup_epochs * steps),
                                           total_steps=cfg.epochs * steps)
    run = TrainRun(cfg, dist, device, spec, img_size, splits, model, net, optimizer, scheduler,
                   grad_scaler(device, amp_dtype), criterion, amp_dtype, loader, steps, init_info=init_info)
    if cfg.resume:
        _resume(run, Path(cfg.resume))
    run.run_id = cfg.run_id or run.resumed_run_id or new_run_id()
    return run


def _distillation(cfg: TrainConfig, model: nn.Module, base: nn.Module, img_size: int, num_classes: int,
                  device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The hard-distillation loss with its teacher (checked first), and the student switched to two outputs."""
    if not supports_distillation(model):
        raise ConfigError(f"{{opt:distill_from}} needs a student with a distillation token (DeiT's "
                          f"VisionTransformerDistilled: {', '.join(DISTILLED)} or timm's deit_*_distilled_*); "
                          f"{cfg.model} has none", field="distill_from")
    teacher, info = load_teacher(Path(str(cfg.distill_from)), num_classes=num_classes, img_size=img_size,
                                 device=device)
    model.set_distilled_training(True)  # type: ignore[operator]
    return DistillationLoss(base, teacher), info


def _resume(run: TrainRun, path: Path) -> None:
    ckpt = checkpoint.load_checkpoint(path)
    checkpoint.check_compatible(ckpt, path, run.identity())
    checkpoint.restore(ckpt, path, model=run.model, optimizer=run.optimizer, scheduler=run.scheduler,
                       scaler=run.scaler, device=run.device)
    run.start_epoch = int(ckpt["epoch"])
    run.history = list(ckpt.get("history", []))
    run.resumed_run_id = ckpt.get("run_id")
