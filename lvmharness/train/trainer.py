"""Training (phase 1: pretraining, default ImageNet-1K) and fine-tuning (phase 2, default CIFAR-100).

One Trainer for both phases, on one device or under ``torchrun`` (DDP: gloo on CPU, nccl on CUDA). Per epoch it
measures train time without evaluation, data-wait and compute time separately (synchronized), images/s, loss and
top-1/top-5, and writes them as ``train_epoch`` records, TensorBoard scalars and an atomic checkpoint holding
everything needed to resume (model, optimizer, scheduler, scaler, epoch, RNG states).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from lvmharness import data as datamod
from lvmharness import traces
from lvmharness.devices import resolve_device, synchronizer
from lvmharness.models import create_model, resolve
from lvmharness.results import run_id_arg

CHECKPOINT_FORMAT = "lvmharness.checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


class TrainingError(RuntimeError):
    """Training stopped for a reason the user can act on; the message says which."""


class NonFiniteLossError(TrainingError):
    pass


class CheckpointError(TrainingError):
    pass


@dataclass
class TrainConfig:
    model: str = "vit"
    batch_size: int = 64  # per process; the global batch is batch_size × world size
    lr: float | None = None  # default by phase: 5e-4 (pretrain), 1e-4 (fine-tune)
    epochs: int = 1
    output_dir: str = "runs/train"
    phase: int = 1
    device: str = "auto"
    dataset: str | None = None  # default by phase: imagenet (1), cifar100 (2)
    data_dir: str = "data"
    download: bool = False
    img_size: int | None = None
    workers: int = 2
    amp: bool = False
    resume: str | None = None
    init_checkpoint: str | None = None
    pretrained: bool = False
    max_steps_per_epoch: int | None = None
    max_eval_steps: int | None = None
    seed: int = 0
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    synthetic_size: int = 1024
    synthetic_classes: int = 100
    results_dir: str = "results"
    run_id: str | None = None
    profile: bool = False

    def __post_init__(self) -> None:
        if self.phase not in (1, 2):
            raise ValueError(f"--phase must be 1 (pretrain) or 2 (fine-tune), got {self.phase}")
        for name in ("batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if self.dataset is not None and self.dataset not in datamod.DATASETS:
            raise ValueError(f"--dataset {self.dataset!r}: valid datasets are {', '.join(datamod.DATASETS)}")

    @property
    def dataset_name(self) -> str:
        return self.dataset or ("imagenet" if self.phase == 1 else "cifar100")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (5e-4 if self.phase == 1 else 1e-4)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _dist_from_env() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


# --- checkpoints ---------------------------------------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    import numpy as np

    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype("int64")), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype("uint32"), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomically: a reader (or a crash) sees the previous complete file or the new complete file."""
    from lvmharness.results import atomic_write

    atomic_write(path, lambda fh: torch.save(payload, fh))


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load an lvmharness training checkpoint (weights_only: no code runs from the file)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(
            f"checkpoint {p} is corrupt or not a PyTorch file ({type(exc).__name__}: {str(exc)[:200]}); "
            "it was left untouched. Resume from another checkpoint or start without --resume."
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p} is not an lvmharness training checkpoint (use --init_checkpoint for weights)")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{p} has checkpoint version {ckpt.get('version')}; this lvmharness reads "
                              f"{CHECKPOINT_VERSION}")
    return dict(ckpt)


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"--init_checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} is corrupt or not a weights file ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    if isinstance(sd, dict) and sd.get("format") == CHECKPOINT_FORMAT:
        sd = sd["model"]
    elif isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    elif isinstance(sd, dict) and isinstance(sd.get("model"), dict):
        sd = sd["model"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_init_weights(model: nn.Module, path: Path) -> dict[str, Any]:
    """Load any timm-compatible state dict, lvmharness checkpoint or safetensors file into ``model``; a classifier
    head of another size is replaced (left at its fresh init), position embeddings of another size resampled."""
    sd = _read_weights(path)
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
                    raise CheckpointError(f"cannot resample {key} for {type(model).__name__}")
                sd[key] = resample_abs_pos_embed(sd[key], new_size=list(grid), num_prefix_tokens=prefix)
            else:
                raise CheckpointError(f"{path}: {key} has shape {tuple(sd[key].shape)}, the model wants "
                                      f"{tuple(own[key].shape)}: not weights for this architecture")
    result = model.load_state_dict(sd, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(classifier)]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{path} does not fit {type(model).__name__}: missing {missing[:5]}, unexpected "
            f"{list(result.unexpected_keys)[:5]}"
        )
    return {"init_checkpoint": str(path), "head_replaced": bool(dropped), "head_keys": dropped}


# --- the trainer ---------------------------------------------------------------------------------------------------


def cosine_with_warmup(warmup_steps: int, total_steps: int) -> Any:
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


@dataclass
class EpochStats:
    epoch: int
    steps: int
    images: int
    epoch_s: float
    data_wait_s: float
    compute_s: float
    loss: float
    lr: float
    top1: float | None = None
    top5: float | None = None
    eval_s: float | None = None
    step_ms: list[float] = field(default_factory=list)

    @property
    def throughput_img_s(self) -> float:
        return self.images / self.epoch_s if self.epoch_s > 0 else 0.0


class Trainer:
    """Build once, then :meth:`fit`. ``splits`` overrides the dataset (tests, benches, your own data)."""

    def __init__(self, cfg: TrainConfig, *, splits: datamod.DataSplits | None = None,
                 save_checkpoints: bool = True, write_records: bool = True) -> None:
        self.cfg = cfg
        self.dist = _dist_from_env()
        self.out = Path(cfg.output_dir)
        self.save_checkpoints = save_checkpoints
        self.write_records = write_records
        self._init_distributed()
        torch.manual_seed(cfg.seed + self.dist.rank)
        random.seed(cfg.seed + self.dist.rank)
        self.spec = resolve(cfg.model)
        self.img_size = cfg.img_size or self.spec.default_img_size
        self.splits = splits or datamod.build(
            cfg.dataset_name, data_dir=cfg.data_dir, img_size=self.img_size, download=cfg.download and self.dist.main,
            synthetic_size=cfg.synthetic_size, synthetic_classes=cfg.synthetic_classes, seed=cfg.seed,
        )
        self.sync = synchronizer(self.device)
        self.model = create_model(self.spec, img_size=self.img_size, num_classes=self.splits.num_classes,
                                  device=self.device, pretrained=cfg.pretrained and cfg.phase == 2)
        self.init_info: dict[str, Any] = {}
        if cfg.init_checkpoint:
            self.init_info = load_init_weights(self.model, Path(cfg.init_checkpoint))
            self.model.to(self.device)
        self.amp_dtype: torch.dtype | None = None
        if cfg.amp:
            cuda_bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
            self.amp_dtype = torch.bfloat16 if self.device.type != "cuda" or cuda_bf16 else torch.float16
        self.scaler = torch.amp.GradScaler(enabled=self.amp_dtype == torch.float16)
        self.net: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.train_loader = self._loader(self.splits.train, train=True)
        self.steps_per_epoch = len(self.train_loader)
        if cfg.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.max_steps_per_epoch)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        total = cfg.epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, cosine_with_warmup(round(cfg.warmup_epochs * self.steps_per_epoch), total)
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.start_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.store: Any = None
        if cfg.resume:
            self._resume(Path(cfg.resume))

    # -- setup helpers
    def _init_distributed(self) -> None:
        self.device: torch.device
        want = resolve_device(self.cfg.device)
        if self.dist.enabled:
            if want.type == "cuda":
                self.device = torch.device("cuda", self.dist.local_rank)
                torch.cuda.set_device(self.device)
                backend = "nccl"
            else:
                self.device = want
                backend = "gloo"
            if not dist.is_initialized():
                dist.init_process_group(backend=backend)
        else:
            self.device = want

    def _loader(self, ds: Dataset[Any], *, train: bool) -> DataLoader[Any]:
        sampler: DistributedSampler[Any] | None = None
        if self.dist.enabled and train:
            sampler = DistributedSampler(ds, num_replicas=self.dist.world, rank=self.dist.rank, shuffle=True,
                                         seed=self.cfg.seed, drop_last=True)
        elif self.dist.enabled:  # eval: a disjoint shard per rank, no padding, so counts are exact
            ds = Subset(ds, list(range(self.dist.rank, len(ds), self.dist.world)))  # type: ignore[arg-type]
        gen = torch.Generator().manual_seed(self.cfg.seed)
        return DataLoader(
            ds, batch_size=self.cfg.batch_size, shuffle=train and sampler is None, sampler=sampler,
            num_workers=self.cfg.workers, drop_last=train, pin_memory=self.device.type == "cuda",
            persistent_workers=self.cfg.workers > 0, generator=gen,
        )

    def _resume(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        if ckpt.get("model_name") != self.spec.timm_name:
            raise CheckpointError(f"{path} is a checkpoint of {ckpt.get('model_name')}, not {self.spec.timm_name}")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        _set_rng_state(ckpt["rng"])
        self.start_epoch = int(ckpt["epoch"])
        self.history = list(ckpt.get("history", []))
        self.resumed_run_id = ckpt.get("run_id")

    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return torch.autocast(device_type=self.device.type, enabled=False)
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    @property
    def dtype_name(self) -> str:
        if self.amp_dtype is None:
            return "fp32"
        return "amp_bf16" if self.amp_dtype == torch.bfloat16 else "amp_fp16"

    @property
    def global_batch(self) -> int:
        return self.cfg.batch_size * self.dist.world

    # -- the loop
    def train_epoch(self, epoch: int) -> EpochStats:
        """One epoch (bounded by max_steps_per_epoch). Times: data wait = waiting for the loader plus the copy to
        the device; compute = forward + backward + optimizer step, synchronized; epoch = wall time of both."""
        self.net.train()
        sampler = self.train_loader.sampler
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        self._barrier()
        self.sync()
        t_epoch = time.perf_counter()
        data_wait = compute = 0.0
        loss_sum, images = 0.0, 0
        step_ms: list[float] = []
        batches = iter(self.train_loader)
        progress = self._progress(epoch)
        for step in range(self.steps_per_epoch):
            t0 = time.perf_counter()
            try:
                x, y = next(batches)
            except StopIteration:
                break
            x = x.to(self.device, non_blocking=True)  # (B, 3, H, W) float32, normalized
            y = y.to(self.device, non_blocking=True)  # (B,) class indices
            self.sync()
            t1 = time.perf_counter()
            with self._autocast():
                logits = self.net(x)  # (B, num_classes)
                loss = self.criterion(logits.float(), y)
            value = float(loss.detach())  # syncs; needed anyway to stop on a non-finite loss
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"loss became {value} at epoch {epoch + 1}, step {step + 1}; training stopped before the "
                    f"update. The last good checkpoint is {self.out / CHECKPOINT_NAME} "
                    f"({'epoch ' + str(epoch) if epoch else 'none yet'}). Lower --lr or check the data."
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.sync()
            t2 = time.perf_counter()
            data_wait += t1 - t0
            compute += t2 - t1
            step_ms.append((t2 - t0) * 1e3)
            loss_sum += value * x.shape[0]
            images += x.shape[0]
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{value:.3f}")
        if progress is not None:
            progress.close()
        self.sync()
        self._barrier()
        elapsed = time.perf_counter() - t_epoch
        # Global figures: the slowest rank's wall time, everybody's images and loss.
        elapsed = self._reduce(elapsed, op="max")
        images_all = int(self._reduce(float(images)))
        loss_all = self._reduce(loss_sum) / max(1, images_all)
        return EpochStats(epoch + 1, len(step_ms), images_all, elapsed, data_wait, compute, loss_all,
                          self.optimizer.param_groups[0]["lr"], step_ms=step_ms)

    def evaluate(self) -> tuple[float, float, float]:
        """(top-1 %, top-5 %, seconds) on the validation split, exact across ranks."""
        self.net.eval()
        loader = self._loader(self.splits.val, train=False)
        correct1 = correct5 = count = 0
        t0 = time.perf_counter()
        with torch.inference_mode(), self._autocast():
            for i, (x, y) in enumerate(loader):
                if self.cfg.max_eval_steps is not None and i >= self.cfg.max_eval_steps:
                    break
                x, y = x.to(self.device), y.to(self.device)
                logits = self.model(x)  # (B, C); the unwrapped module: no DDP collectives in eval
                k = min(5, logits.shape[1])
                top = logits.topk(k, dim=1).indices  # (B, k)
                hit = top.eq(y[:, None])
                correct1 += int(hit[:, 0].sum())
                correct5 += int(hit.any(dim=1).sum())
                count += int(y.numel())
        self.sync()
        c1, c5, n = (self._reduce(float(v)) for v in (correct1, correct5, count))
        seconds = self._reduce(time.perf_counter() - t0, op="max")
        return (100.0 * c1 / n if n else 0.0), (100.0 * c5 / n if n else 0.0), seconds

    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
        writer = self._tb_writer()
        if self.start_epoch >= cfg.epochs:
            self._log(f"nothing to do: the checkpoint has {self.start_epoch} of {cfg.epochs} epochs")
        last: EpochStats | None = None
        t_start = time.perf_counter()
        for epoch in range(self.start_epoch, cfg.epochs):
            stats = self.train_epoch(epoch)
            stats.top1, stats.top5, stats.eval_s = self.evaluate()
            last = stats
            row = {k: v for k, v in asdict(stats).items() if k != "step_ms"}
            row["throughput_img_s"] = stats.throughput_img_s
            self.history.append(row)
            if self.dist.main:
                if self.save_checkpoints:
                    save_checkpoint(self.out / CHECKPOINT_NAME, self._payload(epoch + 1))
                self._record_epoch(stats)
                if writer is not None:
                    for key in ("loss", "lr", "top1", "top5", "epoch_s", "data_wait_s", "compute_s",
                                "throughput_img_s"):
                        writer.add_scalar(f"train/{key}", row[key], stats.epoch)
                    writer.flush()
                self._log(
                    f"epoch {stats.epoch}/{cfg.epochs}: {stats.epoch_s:.2f} s ({stats.throughput_img_s:.1f} img/s, "
                    f"data wait {stats.data_wait_s / max(stats.epoch_s, 1e-9):.0%}), loss {stats.loss:.4f}, "
                    f"top-1 {stats.top1:.2f}%, top-5 {stats.top5:.2f}%"
                )
        summary = self._summary(last, time.perf_counter() - t_start)
        if self.dist.main and last is not None:
            self._record_result(summary)
        if writer is not None:
            writer.close()
        return summary

    # -- outputs
    def _payload(self, epochs_done: int) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": epochs_done,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "rng": _rng_state(),
            "model_name": self.spec.timm_name, "alias": self.cfg.model, "num_classes": self.splits.num_classes,
            "img_size": self.img_size, "config": {k: v for k, v in asdict(self.cfg).items() if v is not None},
            "history": self.history, "run_id": self._store().run_id if self.write_records else None,
        }

    def _store(self) -> Any:
        if self.store is None:
            from lvmharness import envinfo
            from lvmharness.results import RunStore

            run_id = self.cfg.run_id or getattr(self, "resumed_run_id", None)
            self.store = RunStore(Path(self.cfg.results_dir), run_id)
            if not self.store.env_path.exists():
                self.store.write_env({**envinfo.collect([self.device]), "world_size": self.dist.world})
        return self.store

    def _identity(self, metric: str) -> dict[str, Any]:
        return {
            "metric": metric, "model": self.spec.timm_name, "alias": self.cfg.model, "family": self.spec.family,
            "device": str(self.device.type), "dtype": self.dtype_name, "batch_size": self.global_batch,
            "img_size": self.img_size, "phase": "train" if self.cfg.phase == 1 else "finetune",
            "options": {"dataset": self.splits.name, "training_phase": self.cfg.phase, "world_size": self.dist.world},
        }

    def _record_epoch(self, s: EpochStats) -> None:
        if not self.write_records:
            return
        from lvmharness.results import case_label, make_record
        from lvmharness.stats import percentile

        ident = self._identity("train_epoch")
        label = case_label(self.cfg.model, ident["device"], ident["dtype"], self.global_batch, self.img_size,
                           {"dataset": self.splits.name})
        values: dict[str, Any] = {
            "epoch": s.epoch, "steps": s.steps, "images": s.images, "epoch_s": s.epoch_s, "data_wait_s": s.data_wait_s,
            "compute_s": s.compute_s, "data_wait_share": s.data_wait_s / s.epoch_s if s.epoch_s else None,
            "throughput_img_s": s.throughput_img_s, "loss": s.loss, "lr": s.lr, "top1": s.top1, "top5": s.top5,
            "eval_s": s.eval_s, "samples": s.step_ms,
        }
        if s.step_ms:
            values["step_ms_p50"] = percentile(s.step_ms, 50)
        store = self._store()
        store.add(make_record(run_id=store.run_id, case=f"train_epoch[{label}-e{s.epoch}]", values=values,
                              provenance=self._provenance(), **ident))

    def _record_result(self, summary: dict[str, Any]) -> None:
        if not self.write_records:
            return
        from lvmharness.results import make_record

        store = self._store()
        ident = self._identity("train_result")
        store.add(make_record(run_id=store.run_id, values={k: v for k, v in summary.items() if
                                                          isinstance(v, int | float) and not isinstance(v, bool)},
                              provenance=self._provenance(), **ident))

    def _provenance(self) -> dict[str, Any]:
        return {
            "dataset_source": self.splits.source, "per_process_batch": self.cfg.batch_size,
            "world_size": self.dist.world, "steps_per_epoch": self.steps_per_epoch, "optimizer": "AdamW",
            "schedule": f"linear warm-up {self.cfg.warmup_epochs} epoch(s) + cosine", "lr": self.cfg.learning_rate,
            "weight_decay": self.cfg.weight_decay, "label_smoothing": self.cfg.label_smoothing,
            "workers": self.cfg.workers, "timing": "synchronized; data wait includes the host-to-device copy",
            "torch_num_threads": torch.get_num_threads(), "output_dir": str(self.out), **self.init_info,
        }

    def _summary(self, last: EpochStats | None, wall_s: float) -> dict[str, Any]:
        from lvmharness.measure.flops import analyze

        gmacs = analyze(self.cfg.model, img_size=self.img_size, backward=False).macs / 1e9
        best = max((h["top1"] for h in self.history if h.get("top1") is not None), default=None)
        return {
            "epochs": len(self.history), "top1": last.top1 if last else None, "top5": last.top5 if last else None,
            "best_top1": best, "params": sum(p.numel() for p in self.model.parameters()), "gmacs": gmacs,
            "num_classes": self.splits.num_classes, "wall_s": wall_s,
            "checkpoint": str(self.out / CHECKPOINT_NAME) if self.save_checkpoints else None,
            "run_dir": str(self._store().run_dir) if self.write_records and self.dist.main else None,
        }

    def _tb_writer(self) -> Any:
        if not self.dist.main or not self.write_records:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(self.out / "tb"))

    def _progress(self, epoch: int) -> Any:
        if not self.dist.main:
            return None
        from tqdm import tqdm

        return tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{self.cfg.epochs}", leave=False,
                    disable=None, file=sys.stderr)

    def _log(self, text: str) -> None:
        if self.dist.main:
            print(text, flush=True)

    def _barrier(self) -> None:
        if self.dist.enabled:
            dist.barrier()

    def _reduce(self, value: float, op: str = "sum") -> float:
        if not self.dist.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return float(t.item())

    def close(self) -> None:
        if self.dist.enabled and dist.is_initialized():
            dist.destroy_process_group()


def profile_training(trainer: Trainer, *, active: int = 3) -> Path:
    """Trace a few training steps, then restore every state the steps touched (the experiment is unchanged)."""
    saved: dict[str, Any] = {
        "model": copy.deepcopy(trainer.model.state_dict()),
        "optimizer": copy.deepcopy(trainer.optimizer.state_dict()),
        "scheduler": copy.deepcopy(trainer.scheduler.state_dict()),
        "scaler": copy.deepcopy(trainer.scaler.state_dict()),
        "rng": torch.get_rng_state(),
    }
    batches = iter(trainer.train_loader)
    first = next(batches)

    def step() -> None:
        x, y = first
        x, y = x.to(trainer.device), y.to(trainer.device)
        trainer.net.train()
        with trainer._autocast():
            loss = trainer.criterion(trainer.net(x).float(), y)
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.scaler.scale(loss).backward()
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()

    try:
        out = traces.trace(step, trainer.out / "tb" / "profile", trainer.device, active=active, worker_name="train")
    finally:
        trainer.model.load_state_dict(saved["model"])
        trainer.optimizer.load_state_dict(saved["optimizer"])
        trainer.scheduler.load_state_dict(saved["scheduler"])
        trainer.scaler.load_state_dict(saved["scaler"])
        torch.set_rng_state(saved["rng"])
    return out



# --- command line ----------------------------------------------------------------------------------------------


def build_parser(prog: str = "train.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Pretrain (phase 1) or fine-tune (phase 2) a vision model, "
                                "timing every epoch. Under torchrun, --batch_size is per process.")
    p.add_argument("--model", default="vit", help="vit|deit|swin|resnet, a size alias or any timm name")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--lr", type=float, default=None, help="default: 5e-4 for phase 1, 1e-4 for phase 2")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--output_dir", default="runs/train", help="checkpoints and TensorBoard scalars")
    p.add_argument("--phase", type=int, choices=[1, 2], default=1, help="1: pretrain (ImageNet), 2: fine-tune")
    p.add_argument("--device", default="auto", help="auto|cuda|cuda:N|cpu|mps")
    p.add_argument("--dataset", choices=datamod.DATASETS, default=None,
                   help="default: imagenet for phase 1, cifar100 for phase 2")
    p.add_argument("--data_dir", default="data")
    p.add_argument("--download", action="store_true", help="download CIFAR-100 with torchvision (needs a network)")
    p.add_argument("--img_size", type=int, default=None, help="default: the model's native size")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--amp", action="store_true", help="autocast: bf16 (fp16 + grad scaling on GPUs without bf16)")
    p.add_argument("--resume", default=None, help="an lvmharness checkpoint.pt to continue from")
    p.add_argument("--init_checkpoint", default=None,
                   help="weights to start from: a phase-1 checkpoint, a timm state dict or a .safetensors file")
    p.add_argument("--pretrained", action="store_true", help="timm hub weights for phase 2 (needs a network)")
    p.add_argument("--max_steps_per_epoch", type=int, default=None)
    p.add_argument("--max_eval_steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weight_decay", type=float, default=0.05)
    p.add_argument("--warmup_epochs", type=float, default=1.0)
    p.add_argument("--label_smoothing", type=float, default=0.1)
    p.add_argument("--synthetic_size", type=int, default=1024, help="train images of --dataset synthetic")
    p.add_argument("--synthetic_classes", type=int, default=100)
    p.add_argument("--results_dir", default="results", help="result store for train_epoch / train_result records")
    p.add_argument("--run_id", default=None, type=run_id_arg)
    p.add_argument("--profile", action="store_true",
                   help="write a torch.profiler trace of a few steps to <output_dir>/tb (separate, untimed pass)")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "train.py") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        cfg = TrainConfig(**vars(args))
        trainer = Trainer(cfg)
    except (ValueError, TrainingError, datamod.DatasetNotFoundError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # device, model and size errors from the library carry their own messages
        from lvmharness.devices import DeviceUnavailableError
        from lvmharness.models import ModelError

        if isinstance(exc, DeviceUnavailableError | ModelError):
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        raise
    try:
        if cfg.profile and trainer.dist.main:
            trace = profile_training(trainer)
            print(f"profiler trace written to {trace}", flush=True)
        summary = trainer.fit()
    except TrainingError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 3
    finally:
        trainer.close()
    if trainer.dist.main and summary.get("top1") is not None:
        print(f"done: top-1 {summary['top1']:.2f}% after {summary['epochs']} epoch(s); "
              f"records in {summary['run_dir']}; checkpoint {summary['checkpoint']}")
    return 0
